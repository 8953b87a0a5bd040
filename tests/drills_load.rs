//! Reliability drills under load (RELIABILITY.md, issue 20 items 6 and 7): manifest files
//! rewritten again and again (the last version of each must win, once), and a soak of
//! crash-looping and steady pods (the agent's memory, file descriptors and threads must
//! stay flat; the series is printed). Each prints one `DRILL name key=value …` line;
//! `HOSTLET_DRILLS=long` runs the long profile.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use common::*;

/// The agent's resident memory (KiB), open file descriptors, threads and CPU time (ms).
fn usage(pid: i32) -> (u64, usize, u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the command name.
    let tick = 1000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let cpu = (f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) * tick;
    (field("VmRSS:"), fds, field("Threads:"), cpu)
}

/// The processes with `marker` in their command line whose parent has not: busybox's
/// shell forks for `sleep`, and the child keeps the shell's command line for a moment.
fn shells(marker: &str) -> Vec<i32> {
    find_pids_by_cmdline(marker)
        .into_iter()
        .filter(|p| {
            ppid_of(*p)
                .and_then(cmdline)
                .is_none_or(|c| !c.contains(marker))
        })
        .collect()
}

fn pod(name: &str, image: &str, marker: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {image}\n    command: [sh, -c, '{script}', {marker}]\n"
    )
}

/// Drill 6: manifest files rewritten every 100 ms (a few at a time, at random); once the
/// writes stop, each file's last version runs exactly once and no earlier version runs.
#[test]
fn manifest_churn() {
    let (files, secs) = if long() { (100, 60) } else { (20, 10) };
    let f = Fixture::with_args(&[]).patient(Duration::from_secs(180));
    let tag = format!("churn{}", std::process::id());
    let image = f.image();
    let mut version: BTreeMap<usize, usize> = BTreeMap::new();
    let write = |i: usize, v: usize| {
        write_manifest(
            &f.dirs,
            &format!("c{i}.yaml"),
            &pod(
                &format!("c{i}"),
                &image,
                &format!("{tag}-{i}-v{v}-end"),
                "while :; do sleep 1; done",
            ),
        );
    };
    for i in 0..files {
        write(i, 0);
        version.insert(i, 0);
    }
    let agent = f.agent().pid();
    let (_, _, _, cpu0) = usage(agent);
    let started = Instant::now();
    let mut x: u64 = std::process::id() as u64 | 1;
    let (mut writes, mut peak_rss) = (0, 0);
    while started.elapsed() < Duration::from_secs(secs) {
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % files as u64) as usize;
            let v = version[&i] + 1;
            write(i, v);
            version.insert(i, v);
            writes += 1;
        }
        peak_rss = peak_rss.max(usage(agent).0);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, _, _, cpu1) = usage(agent);
    let churn_cpu = cpu1 - cpu0;
    // Settled: the last version of every file runs once, nothing older runs.
    let settle = Instant::now();
    let (dup, stale) = f.wait("the last version of every pod running, alone", || {
        let mut dup = 0;
        let mut missing = 0;
        for (i, v) in &version {
            match find_pids_by_cmdline(&format!("{tag}-{i}-v{v}-end")).len() {
                0 => missing += 1,
                1 => {}
                _ => dup += 1,
            }
        }
        let all = find_pids_by_cmdline(&tag).len();
        let stale = all.saturating_sub(files);
        (missing == 0 && stale == 0).then_some((dup, stale))
    });
    println!(
        "DRILL manifest_churn files={files} secs={secs} writes={writes} settle_s={} duplicates={dup} stale={stale} agent_cpu_ms_during={churn_cpu} peak_agent_rss_kib={peak_rss}",
        settle.elapsed().as_secs()
    );
    assert_eq!((dup, stale), (0, 0));
    assert!(peak_rss < 300 << 10, "agent RSS {peak_rss} KiB");
    for i in 0..files {
        remove_manifest(&f.dirs, &format!("c{i}.yaml"));
    }
    f.wait("every churn pod gone", || {
        find_pids_by_cmdline(&tag).is_empty().then_some(())
    });
}

/// Drill 7: crash-looping pods (their container exits at once; back-off capped at 1 s)
/// beside steady ones; the agent's RSS, fds and threads are sampled and must stay flat
/// (the floor of the last third of the series no higher than the peak of the first).
#[test]
fn soak() {
    // Issue 20's figures: 50 + 50 pods for an hour in the long profile; `HOSTLET_SOAK_SECS`
    // shortens or lengthens a run by hand.
    let (pods, secs, every) = if long() { (50, 3600, 60) } else { (5, 60, 5) };
    let secs = std::env::var("HOSTLET_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(secs);
    let f = Fixture::with_args(&[
        "--crash-loop-backoff-initial",
        "1s",
        "--crash-loop-backoff-max",
        "1s",
        "--container-log-max-size",
        "64Ki",
    ])
    .patient(Duration::from_secs(120));
    let tag = format!("soak{}", std::process::id());
    let image = f.image();
    for i in 0..pods {
        write_manifest(
            &f.dirs,
            &format!("crash{i}.yaml"),
            &pod(
                &format!("crash{i}"),
                &image,
                &format!("{tag}-c{i}"),
                "echo crash; exit 1",
            ),
        );
        write_manifest(
            &f.dirs,
            &format!("steady{i}.yaml"),
            &pod(
                &format!("steady{i}"),
                &image,
                &format!("{tag}-s{i}-end"),
                "while :; do echo tick; sleep 1; done",
            ),
        );
    }
    f.wait("every steady pod running", || {
        (0..pods)
            .all(|i| shells(&format!("{tag}-s{i}-end")).len() == 1)
            .then_some(())
    });
    let agent = f.agent().pid();
    let steady: Vec<i32> = (0..pods)
        .map(|i| shells(&format!("{tag}-s{i}-end"))[0])
        .collect();
    let started = Instant::now();
    let mut series = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(every));
        let u = usage(agent);
        series.push(u);
        eprintln!(
            "soak t={}s rss_kib={} fds={} threads={} cpu_ms={}",
            started.elapsed().as_secs(),
            u.0,
            u.1,
            u.2,
            u.3
        );
    }
    let lost: Vec<usize> = (0..pods)
        .filter(|i| shells(&format!("{tag}-s{i}-end")) != vec![steady[*i]])
        .collect();
    for i in &lost {
        let now = shells(&format!("{tag}-s{i}-end"));
        let log = f.dirs.agent_log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("steady{i}-")) && !l.contains("DEBUG"))
            .collect();
        eprintln!(
            "steady{i}: pid {} then {now:?}; agent log:\n{}",
            steady[*i],
            lines.join("\n")
        );
    }
    let steady_lost = lost.len();
    let log_bytes: u64 = walk_size(&f.dirs.logs);
    // Flat: the least of the last third is no more than the most of the first third (plus a
    // margin). fds and threads move with the restarts in flight (pipes to monitors, blocking
    // threads); a leak lifts the floor.
    let third = (series.len() / 3).max(1);
    let (head, tail) = (&series[..third], &series[series.len() - third..]);
    let most = |s: &[(u64, usize, u64, u64)], k: fn(&(u64, usize, u64, u64)) -> u64| {
        s.iter().map(k).max().unwrap_or(0)
    };
    let least = |s: &[(u64, usize, u64, u64)], k: fn(&(u64, usize, u64, u64)) -> u64| {
        s.iter().map(k).min().unwrap_or(0)
    };
    let rss = (least(tail, |u| u.0), most(head, |u| u.0));
    let fds = (least(tail, |u| u.1 as u64), most(head, |u| u.1 as u64));
    let threads = (least(tail, |u| u.2), most(head, |u| u.2));
    let fmt = |k: fn(&(u64, usize, u64, u64)) -> u64| {
        series
            .iter()
            .map(|u| k(u).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "DRILL soak crashlooping={pods} steady={pods} secs={secs} steady_lost={steady_lost} log_bytes={log_bytes} rss_kib=[{}] fds=[{}] threads=[{}]",
        fmt(|u| u.0),
        fmt(|u| u.1 as u64),
        fmt(|u| u.2)
    );
    assert_eq!(steady_lost, 0);
    assert!(
        rss.0 <= rss.1 + rss.1 / 10 + 2048,
        "RSS floor rose: {rss:?} KiB"
    );
    assert!(fds.0 <= fds.1 + 4, "fd floor rose: {fds:?}");
    assert!(threads.0 <= threads.1 + 2, "thread floor rose: {threads:?}");
    // Rotation bounds each container's log: 64 KiB × 5 files, 2 containers' worth a pod.
    assert!(log_bytes < (pods as u64 * 2) * 5 * (64 << 10) + (1 << 20));
}

fn walk_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        total += if m.is_dir() {
            walk_size(&e.path())
        } else {
            m.len()
        };
    }
    total
}

/// A reading of `prober_probe_duration_seconds`: (count, sum in seconds, cumulative
/// bucket counts by bound).
type ProbeHist = (u64, f64, Vec<(f64, u64)>);

/// The histogram of one container's readiness probe from `/metrics`.
fn probe_hist(addr: &str, container: &str) -> Option<ProbeHist> {
    let (_, body) = http_get(addr, "/metrics")?;
    let want = format!("probe_type=\"Readiness\",container=\"{container}\"");
    let (mut count, mut sum, mut buckets) = (None, None, Vec::new());
    for l in body.lines().filter(|l| l.contains(&want)) {
        let value = l.rsplit(' ').next()?;
        if l.starts_with("prober_probe_duration_seconds_count") {
            count = value.parse().ok();
        } else if l.starts_with("prober_probe_duration_seconds_sum") {
            sum = value.parse().ok();
        } else if l.starts_with("prober_probe_duration_seconds_bucket") {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            if le != "+Inf" {
                buckets.push((le.parse().ok()?, value.parse().ok()?));
            }
        }
    }
    Some((count?, sum?, buckets))
}

/// Probes between two readings: (checks, mean seconds, the bucket bound under which
/// every check of the interval finished).
fn probe_delta(a: &ProbeHist, b: &ProbeHist) -> (u64, f64, f64) {
    let n = b.0 - a.0;
    let mean = if n == 0 { 0.0 } else { (b.1 - a.1) / n as f64 };
    let bound =
        b.2.iter()
            .zip(&a.2)
            .find(|((_, nb), (_, na))| nb - na == n)
            .map_or(f64::INFINITY, |((le, _), _)| *le);
    (n, mean, bound)
}

fn cpu_ms(pid: i32) -> u64 {
    usage(pid).3
}

/// Drill 6: a container writing to stdout as fast as it can beside a pod whose readiness
/// is probed every second. The flood's log stays within its rotation limits, its monitor's
/// CPU is measured, and the other pod's probes (their durations from the kubelet's
/// `prober_probe_duration_seconds`) keep passing, before and during the flood.
#[test]
fn stdout_flood_beside_a_probed_pod() {
    let secs = if long() { 300 } else { 20 };
    let port = free_port().to_string();
    let f = Fixture::with_args(&[
        "--read-only-port",
        &port,
        "--container-log-max-size",
        "1Mi",
        "--container-log-max-files",
        "3",
    ]);
    let addr = format!("127.0.0.1:{port}");
    let tag = format!("flood{}", std::process::id());
    let image = f.image();
    write_manifest(
        &f.dirs,
        "calm.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: calm}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: calm\n    image: {image}\n    command: [sh, -c, 'touch /tmp/ready; while :; do sleep 1; done', {tag}-calm]\n    readinessProbe:\n      exec: {{command: [cat, /tmp/ready]}}\n      periodSeconds: 1\n"
        ),
    );
    let ready = || {
        f.pod_status("calm").and_then(|s| {
            let conds = s["conditions"].as_array()?.clone();
            Some(
                conds
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True"),
            )
        })
    };
    f.wait("the probed pod Ready", || ready()?.then_some(()));
    // Watches Ready once a second for `secs`; returns the seconds it was not Ready.
    let watch = |secs: u64| {
        let mut not_ready = 0;
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_secs(1));
            if ready() != Some(true) {
                not_ready += 1;
            }
        }
        not_ready
    };
    let quiet0 = f.wait("probe metrics", || probe_hist(&addr, "calm"));
    let quiet_not_ready = watch(secs);
    let quiet1 = probe_hist(&addr, "calm").expect("probe metrics");

    write_manifest(
        &f.dirs,
        "flood.yaml",
        &pod(
            "flood",
            &image,
            &format!("{tag}-flood"),
            "exec yes flooding-stdout",
        ),
    );
    // busybox's sh runs `yes` as an applet in its own process, so the marker stays.
    let flood_marker = format!("{tag}-flood");
    let yes = f.wait("the flood running", || {
        find_pids_by_cmdline(&flood_marker).first().copied()
    });
    let monitor = ppid_of(yes).expect("the flood's monitor");
    let agent = f.agent().pid();
    let (mon0, agent0, t0) = (cpu_ms(monitor), cpu_ms(agent), Instant::now());
    let flood0 = probe_hist(&addr, "calm").expect("probe metrics");
    let flood_not_ready = watch(secs);
    let flood1 = probe_hist(&addr, "calm").expect("probe metrics");
    let wall = t0.elapsed().as_millis() as u64;
    let (mon_cpu, agent_cpu) = (cpu_ms(monitor) - mon0, cpu_ms(agent) - agent0);
    let flood_log = cri_log_files(&f.dirs.logs, "flood", "c");
    let log_bytes: u64 = flood_log
        .first()
        .and_then(|p| p.parent())
        .map_or(0, walk_size);
    let still = find_pids_by_cmdline(&flood_marker).contains(&yes);
    let failed = |addr: &str| -> u64 {
        http_get(addr, "/metrics")
            .map(|(_, b)| {
                b.lines()
                    .filter(|l| {
                        l.starts_with("prober_probe_total")
                            && l.contains("container=\"calm\"")
                            && l.contains("result=\"failed\"")
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(u64::MAX)
    };
    let probes_failed = failed(&addr);
    let (qn, qmean, qmax) = probe_delta(&quiet0, &quiet1);
    let (fl_n, fl_mean, fl_max) = probe_delta(&flood0, &flood1);
    println!(
        "DRILL stdout_flood secs={secs} probes_quiet={qn} probe_mean_ms_quiet={:.1} probe_max_le_quiet={qmax} probes_flood={fl_n} probe_mean_ms_flood={:.1} probe_max_le_flood={fl_max} probes_failed={probes_failed} not_ready_s_quiet={quiet_not_ready} not_ready_s_flood={flood_not_ready} flood_log_bytes={log_bytes} flood_monitor_cpu_pct={:.0} agent_cpu_pct={:.1} flood_running={still}",
        qmean * 1000.0,
        fl_mean * 1000.0,
        mon_cpu as f64 * 100.0 / wall as f64,
        agent_cpu as f64 * 100.0 / wall as f64,
    );
    assert!(still, "the flooding container stopped");
    assert_eq!(probes_failed, 0, "the calm pod's readiness probe failed");
    assert_eq!(
        (quiet_not_ready, flood_not_ready),
        (0, 0),
        "the calm pod lost Ready"
    );
    assert!(fl_n >= secs / 2, "too few probes during the flood: {fl_n}");
    // The probe's timeout is 1 s; each check must end well within it.
    assert!(
        fl_max <= 1.0,
        "a probe took longer than {fl_max} s during the flood"
    );
    // Rotation bounds the flood: 3 files of 1 MiB (the rotated ones compressed) plus the
    // file being written past its limit between two size checks.
    assert!(
        log_bytes < 8 << 20,
        "the flood's log dir holds {log_bytes} bytes"
    );
    assert!(log_bytes > 0, "no log written by the flood");
}
