//! Pod networking with Debian's real CNI plugins (/usr/lib/cni): every test's agent has
//! a bridge, network name and /24 of its own (tests/common/net.rs), so only loopback, that
//! bridge and the test's pod netns ever carry traffic.

mod common;

use std::process::Command;

use common::*;

/// The pod's IP once its status has one.
fn pod_ip(f: &Fixture, name: &str) -> String {
    f.wait(&format!("{name} has a pod IP"), || {
        f.pod_status(name)?["podIP"].as_str().map(str::to_string)
    })
}

fn web(name: &str, image: &str, host_port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && cat /etc/hosts && exec httpd -f -p 8080 -h /www"]
    ports:
    - {{containerPort: 8080, hostPort: {host_port}}}
"#
    )
}

/// Busybox `wget` of Debian's busybox-static segfaults; `nc` does the HTTP/1.0 GET.
fn client(name: &str, image: &str, addr: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "while true; do echo got=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {addr} | tail -n 1); sleep 0.5; done"]
"#
    )
}

fn cache_entries(f: &Fixture) -> Vec<String> {
    std::fs::read_dir(f.dirs.root.join("cni"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

fn iptables_save() -> String {
    let out = Command::new("iptables-save")
        .output()
        .expect("iptables-save");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pods_reach_each_other_the_host_reaches_them_and_host_ports_answer() {
    let f = Fixture::new();
    let net = &f.dirs.net;
    let port = free_port();
    write_manifest(&f.dirs, "srv.yaml", &web("srv", &f.image(), port));
    let ip = pod_ip(&f, "srv");
    assert!(
        ip.starts_with(&format!("10.86.{}.", net.slot)),
        "{ip} not in {}",
        net.subnet
    );
    let status = f.pod_status("srv").unwrap();
    assert_eq!(status["podIPs"], serde_json::json!([{"ip": ip}]));

    // The host reaches the pod IP (through the test's bridge).
    let body = f.wait("the host reaches srv by its pod IP", || {
        http_get(&format!("{ip}:8080"), "/").map(|(_, b)| b)
    });
    assert_eq!(body.trim(), "hello-from-srv-testnode");

    // /etc/hosts has the pod's hostname line with its IP, as the kubelet writes it.
    let lines = f.output("srv", "main", "srv-testnode");
    assert!(
        lines.iter().any(|l| *l == format!("{ip}\tsrv-testnode")),
        "{lines:?}"
    );

    // hostPort through portmap, on 127.0.0.1.
    let (code, body) = f.wait("hostPort answers on 127.0.0.1", || {
        http_get(&format!("127.0.0.1:{port}"), "/")
    });
    assert_eq!((code, body.trim()), (200, "hello-from-srv-testnode"));
    // And on a host address of the test's own: its bridge's (the pods' gateway).
    let (code, _) = f.wait("hostPort answers on the bridge address", || {
        http_get(&format!("{}:{port}", net.gateway), "/")
    });
    assert_eq!(code, 200);

    // A pod reaches the host through its gateway: a listener on the bridge address.
    let listener = std::net::TcpListener::bind((net.gateway.as_str(), 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let gw_port = listener.local_addr().unwrap().port();
    write_manifest(
        &f.dirs,
        "gw.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: gw}}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {}\n    command: [sh, -c, 'while true; do echo hi-gateway | nc -w 2 {} {gw_port}; sleep 0.5; done']\n",
            f.image(),
            net.gateway
        ),
    );
    let said = f.wait("the gw pod connects to the gateway", || {
        use std::io::Read;
        let (mut conn, peer) = listener.accept().ok()?;
        conn.set_nonblocking(false).ok()?;
        conn.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .ok()?;
        let mut text = String::new();
        conn.read_to_string(&mut text).ok()?;
        Some((peer.ip().to_string(), text))
    });
    assert_eq!(said.1.trim(), "hi-gateway");
    assert_eq!(said.0, pod_ip(&f, "gw"), "from the pod's own address");
    remove_manifest(&f.dirs, "gw.yaml");
    f.wait("gw's address released", || {
        (net.allocated_ips() == [ip.clone()]).then_some(())
    });

    // A second pod reaches the first by its pod IP.
    write_manifest(
        &f.dirs,
        "cli.yaml",
        &client("cli", &f.image(), &format!("{ip} 8080")),
    );
    let cli_ip = pod_ip(&f, "cli");
    assert_ne!(cli_ip, ip);
    f.output("cli", "main", "got=hello-from-srv-testnode");

    // `hostlet pods -o wide` shows the IP.
    let out = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(["pods", "-o", "wide", "--root-dir"])
        .arg(&f.dirs.root)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().next().unwrap().contains("IP"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("srv-testnode") && l.contains(&ip)),
        "{table}"
    );

    // A second pod with the same hostPort is refused; the first keeps serving.
    write_manifest(&f.dirs, "dup.yaml", &web("dup", &f.image(), port));
    let message = f.wait("dup is refused its hostPort", || {
        let st = f.pod_status("dup")?;
        let waiting = &st["containerStatuses"][0]["state"]["waiting"];
        let m = waiting["message"].as_str()?.to_string();
        m.contains("already used").then_some(m)
    });
    assert!(
        message.contains(&format!(
            "hostPort {port}/TCP is already used by pod srv-testnode"
        )),
        "{message}"
    );
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/").map(|(c, _)| c),
        Some(200)
    );
    assert_eq!(net.allocated_ips().len(), 2, "dup holds no address");

    // Removal leaves no veth, no host-local address, no cache file, no iptables rule.
    for m in ["srv.yaml", "cli.yaml", "dup.yaml"] {
        remove_manifest(&f.dirs, m);
    }
    f.wait("every pod removed", || {
        f.container_dirs().is_empty().then_some(())
    });
    // The DEL runs after the containers are gone.
    f.wait("no veth, address or cache entry left", || {
        let left = (net.bridge_ports(), net.allocated_ips(), cache_entries(&f));
        (left == Default::default()).then_some(())
    });
    let rules = iptables_save();
    for addr in [&ip, &cli_ip] {
        assert!(
            !rules
                .lines()
                .any(|l| l.contains(&format!("{addr}/32")) || l.contains(&format!("{addr}:"))),
            "rules for {addr} left:\n{rules}"
        );
    }
}

#[test]
fn adoption_after_kill_9_keeps_the_ip_and_removal_after_it_deletes() {
    let mut f = Fixture::new();
    let net = &f.dirs.net;
    let port = free_port();
    write_manifest(&f.dirs, "srv.yaml", &web("srv", &f.image(), port));
    let ip = pod_ip(&f, "srv");
    f.wait("srv serves", || http_get(&format!("{ip}:8080"), "/"));

    f.agent.as_mut().unwrap().kill9();
    f.agent = Some(Agent::start(&f.dirs, &f.reg));
    f.log_has("found containers of an earlier agent");
    assert_eq!(pod_ip(&f, "srv"), ip, "the adopted pod keeps its IP");
    // CHECK passed: the pod was not attached again.
    assert_eq!(
        f.dirs.agent_log().matches("pod network attached").count(),
        1,
        "{}",
        f.dirs.agent_log()
    );
    // CHECK ran. Debian's portmap 1.1.1 fails it for IPv4-only pods by looking for an
    // ip6tables chain it never made (containernetworking/plugins#819); any other CHECK
    // failure is a failure of this test.
    let log = f.dirs.agent_log();
    for l in log
        .lines()
        .filter(|l| l.contains("CHECK of an adopted pod failed"))
    {
        assert!(
            l.contains("cni plugin portmap CHECK: could not check ipv6 dnat"),
            "{l}"
        );
    }
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/").map(|(c, _)| c),
        Some(200),
        "the hostPort survives adoption"
    );

    // Removed while no agent runs: the next agent's DEL comes from the cache.
    f.agent.as_mut().unwrap().kill9();
    remove_manifest(&f.dirs, "srv.yaml");
    f.agent = Some(Agent::start(&f.dirs, &f.reg));
    f.wait("srv removed", || {
        f.container_dirs().is_empty().then_some(())
    });
    f.wait("no veth, address or cache entry left", || {
        let left = (net.bridge_ports(), net.allocated_ips(), cache_entries(&f));
        (left == Default::default()).then_some(())
    });
}

fn sleeper(name: &str, image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "while true; do sleep 1; done"]
    ports:
    - {{containerPort: 80, hostPort: {port}}}
"#,
        port = free_port()
    )
}

/// Lines of `iptables-save` about this test's network.
fn own_rules(net: &TestNet) -> Vec<String> {
    let own = format!("10.86.{}.", net.slot);
    let name = format!("\"{}\"", net.name);
    iptables_save()
        .lines()
        .filter(|l| l.contains(&own) || l.contains(&name))
        .map(str::to_string)
        .collect()
}

#[test]
fn agent_killed_during_add_and_during_del_leaks_nothing() {
    const PODS: usize = 6;
    let mut f = Fixture::new();
    let net = &f.dirs.net;
    assert_eq!(own_rules(net), Vec::<String>::new());
    for i in 0..PODS {
        write_manifest(
            &f.dirs,
            &format!("p{i}.yaml"),
            &sleeper(&format!("p{i}"), &f.image()),
        );
    }
    // Killed once an ADD has begun (its cache entry is written before the first plugin).
    f.wait("an ADD begun", || {
        (!cache_entries(&f).is_empty()).then_some(())
    });
    f.agent.as_mut().unwrap().kill9();
    let interrupted = cache_entries(&f).len();
    f.agent = Some(Agent::start(&f.dirs, &f.reg));
    let mut ips: Vec<String> = (0..PODS).map(|i| pod_ip(&f, &format!("p{i}"))).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), PODS, "{ips:?}");
    f.wait("one address, veth and cache entry per pod", || {
        let counts = (
            net.allocated_ips().len(),
            net.bridge_ports().len(),
            cache_entries(&f).len(),
        );
        (counts == (PODS, PODS, PODS)).then_some(())
    });
    eprintln!("{interrupted} ADDs under way at the kill");

    // Killed once a DEL has begun.
    for i in 0..PODS {
        remove_manifest(&f.dirs, &format!("p{i}.yaml"));
    }
    f.wait("a DEL begun", || {
        (net.bridge_ports().len() < PODS).then_some(())
    });
    f.agent.as_mut().unwrap().kill9();
    f.agent = Some(Agent::start(&f.dirs, &f.reg));
    f.wait("every pod gone", || {
        let pods = std::fs::read_dir(f.dirs.root.join("pods")).map_or(0, |rd| rd.count());
        (pods == 0 && f.container_dirs().is_empty()).then_some(())
    });
    let left = || {
        (
            net.bridge_ports(),
            net.allocated_ips(),
            cache_entries(&f),
            own_rules(net),
        )
    };
    let deadline = std::time::Instant::now() + f.patience;
    while left() != Default::default() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        left(),
        Default::default(),
        "(veths, addresses, cache entries, iptables rules) left; agent log:\n{}",
        f.dirs.agent_log()
    );
}

/// The containers' waiting reason and message, once the pod has one.
fn waiting(f: &Fixture, name: &str) -> Option<(String, String)> {
    let st = f.pod_status(name)?;
    let w = &st["containerStatuses"][0]["state"]["waiting"];
    Some((w["reason"].as_str()?.into(), w["message"].as_str()?.into()))
}

#[test]
fn pods_wait_for_the_network_config_and_plugins_and_start_when_they_appear() {
    // No config (so the built-in default network, whose plugins are missing) and no
    // plugins at all when the agent starts.
    let f = Fixture::prepared(&[], |d| {
        d.net.remove_conf();
        d.net.unlink_plugins();
    });
    let net = &f.dirs.net;
    write_manifest(&f.dirs, "p.yaml", &sleeper("p", &f.image()));
    let (reason, message) = f.wait("p waits for the network", || waiting(&f, "p"));
    assert_eq!(reason, "NetworkNotReady", "{message}");
    assert!(
        message.contains("network \"hostlet\"") && message.contains("bridge, host-local"),
        "{message}"
    );

    // A hostNetwork pod does not wait.
    let marker = format!("hostnet-{}", std::process::id());
    write_manifest(
        &f.dirs,
        "h.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: h}}\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {}\n    command: [sh, -c, 'while true; do sleep 1; done', {marker}]\n",
            f.image()
        ),
    );
    f.container_pid(&marker);
    assert_eq!(waiting(&f, "p").unwrap().0, "NetworkNotReady");

    // The config appears: its plugins are still missing, and the status says so.
    net.write_conf();
    let message = f.wait("p waits for the test network's plugins", || {
        let (_, m) = waiting(&f, "p")?;
        m.contains(&format!("network \"{}\"", net.name))
            .then_some(m)
    });
    assert!(
        message.contains("bridge, host-local, portmap, firewall"),
        "{message}"
    );
    assert!(net.allocated_ips().is_empty());

    // The plugins appear: the pod starts at once (watched, not polled).
    // Seen within 5 s (the agent's fallback, when it cannot watch, looks every 10 s);
    // what follows (the ADD, the container's start) takes what it takes.
    let linked = std::time::Instant::now();
    net.link_plugins();
    f.wait("p no longer waiting for the network", || {
        let waiting = waiting(&f, "p").is_some_and(|(r, _)| r == "NetworkNotReady");
        (!waiting).then_some(())
    });
    let took = linked.elapsed();
    let bound = std::time::Duration::from_secs(5 * u64::from(time_scale()));
    assert!(took < bound, "seen {took:?} after the plugins appeared");
    let ip = pod_ip(&f, "p");
    assert!(ip.starts_with(&format!("10.86.{}.", net.slot)), "{ip}");
    eprintln!("network ready {took:?} after the plugins appeared; pod IP {ip}");
    f.log_has("pod network ready");

    for m in ["p.yaml", "h.yaml"] {
        remove_manifest(&f.dirs, m);
    }
    f.wait("every pod removed", || {
        f.container_dirs().is_empty().then_some(())
    });
    f.wait("no veth, address or cache entry left", || {
        let left = (net.bridge_ports(), net.allocated_ips(), cache_entries(&f));
        (left == Default::default()).then_some(())
    });
}

fn quick_pod(name: &str, image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    ports:
    - {{containerPort: 80, hostPort: {port}}}
"#,
        port = free_port()
    )
}

fn line_count(cmd: &str, args: &[&str]) -> usize {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Cache entries whose ADD had not finished.
fn incomplete_adds(f: &Fixture) -> usize {
    cache_entries(f)
        .iter()
        .filter_map(|n| std::fs::read(f.dirs.root.join("cni").join(n)).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter(|v| v["complete"] == false)
        .count()
}

/// Polls `f` every 5 ms (a kill must land inside a plugin run of a few ms) until it
/// holds, for at most `limit`.
fn soon(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

/// kill -9 of the agent, and a new agent on the same dirs. A child the agent forked just
/// before the kill holds its API socket until it execs (tens of ms on a loaded host), and
/// a new agent that finds the socket answering refuses to start (one agent per root dir):
/// the new one starts once nothing answers there.
fn kill_and_restart(f: &mut Fixture) {
    f.agent.as_mut().unwrap().kill9();
    restart_after_kill(f);
}

fn restart_after_kill(f: &mut Fixture) {
    let sock = f.dirs.root.join("hostlet.sock");
    soon(std::time::Duration::from_secs(5), || {
        std::os::unix::net::UnixStream::connect(&sock).is_err()
    });
    f.agent = Some(Agent::start(&f.dirs, &f.reg));
}

/// The issue's leak test: create/remove cycles, with the agent killed (-9) during ADDs
/// and during DELs, must leave host-local's address files, the links on the test's
/// bridge, the test network's iptables rules and the CNI cache as they were. The short
/// profile runs 20 cycles and 3 kills; `HOSTLET_DRILLS=long` runs 200 and 20. The
/// host-wide `ip link` and `iptables-save` line counts are printed too; other tests'
/// pods running at the same time change those, so only this network's are asserted.
#[test]
fn create_remove_cycles_and_kills_during_add_and_del_leak_nothing() {
    let (cycles, kills) = if long() { (200, 20) } else { (20, 3) };
    const BATCH: usize = 4;
    let rounds = cycles / BATCH;
    let mut f = Fixture::new();
    let image = f.image();
    let started = std::time::Instant::now();
    let state = |f: &Fixture| {
        let net = &f.dirs.net;
        (
            net.allocated_ips().len(),
            net.bridge_ports().len(),
            own_rules(net).len(),
            cache_entries(f).len(),
        )
    };
    let settled = |f: &Fixture, want: (usize, usize, usize, usize), what: &str| {
        f.wait(what, || {
            let pods = std::fs::read_dir(f.dirs.root.join("pods")).map_or(0, |rd| rd.count());
            (pods == 0 && f.container_dirs().is_empty() && state(f) == want).then_some(())
        })
    };
    // A first pod makes what outlives pods (the bridge, the plugins' shared chains).
    write_manifest(&f.dirs, "warm.yaml", &quick_pod("warm", &image));
    pod_ip(&f, "warm");
    remove_manifest(&f.dirs, "warm.yaml");
    f.wait("warm-up pod gone", || {
        let (ips, links, _, cache) = state(&f);
        (f.container_dirs().is_empty() && (ips, links, cache) == (0, 0, 0)).then_some(())
    });
    let before = state(&f);
    let ipam_files_before = std::fs::read_dir(f.dirs.net.ipam_dir()).map_or(0, |rd| rd.count());
    let links_before = line_count("ip", &["-o", "link"]);
    let rules_before = line_count("iptables-save", &[]);

    let (mut add_kills, mut del_kills, mut interrupted_adds) = (0, 0, 0);
    for round in 0..rounds {
        // Kills spread over the rounds, alternating between ADD and DEL.
        let kill_here = (round * kills / rounds) != ((round + 1) * kills / rounds);
        let during_add = (add_kills + del_kills) % 2 == 0;
        let names: Vec<String> = (0..BATCH).map(|i| format!("c{round}x{i}")).collect();
        for n in &names {
            write_manifest(&f.dirs, &format!("{n}.yaml"), &quick_pod(n, &image));
        }
        if kill_here && during_add {
            soon(std::time::Duration::from_secs(20), || {
                incomplete_adds(&f) > 0
            });
            f.agent.as_mut().unwrap().kill9();
            interrupted_adds += incomplete_adds(&f);
            add_kills += 1;
            restart_after_kill(&mut f);
        }
        let mut ips: Vec<String> = names.iter().map(|n| pod_ip(&f, n)).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), BATCH, "round {round}: {ips:?}");
        for n in &names {
            remove_manifest(&f.dirs, &format!("{n}.yaml"));
        }
        if kill_here && !during_add {
            let net = &f.dirs.net;
            soon(std::time::Duration::from_secs(20), || {
                net.bridge_ports().len() < BATCH || cache_entries(&f).len() < BATCH
            });
            kill_and_restart(&mut f);
            del_kills += 1;
        }
        settled(
            &f,
            before,
            &format!("round {round}'s pods gone, nothing left"),
        );
    }

    let after = state(&f);
    let ipam_files_after = std::fs::read_dir(f.dirs.net.ipam_dir()).map_or(0, |rd| rd.count());
    let links_after = line_count("ip", &["-o", "link"]);
    let rules_after = line_count("iptables-save", &[]);
    eprintln!(
        "DRILL network_leaks cycles={} kills={} add_kills={add_kills} del_kills={del_kills} adds_cut_short={interrupted_adds} secs={} host_local_ips={}->{} host_local_files={ipam_files_before}->{ipam_files_after} bridge_links={}->{} own_iptables_lines={}->{} cni_cache={}->{} host_ip_link_lines={links_before}->{links_after} host_iptables_save_lines={rules_before}->{rules_after}",
        rounds * BATCH,
        add_kills + del_kills,
        started.elapsed().as_secs(),
        before.0,
        after.0,
        before.1,
        after.1,
        before.2,
        after.2,
        before.3,
        after.3,
    );
    assert_eq!(
        after, before,
        "(host-local ips, bridge links, own iptables lines, cache entries)"
    );
    assert_eq!(ipam_files_after, ipam_files_before, "host-local's store");
    assert_eq!(add_kills + del_kills, kills);
}
