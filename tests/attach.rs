//! `stdin`, `stdinOnce`, `tty` and `hostlet attach` with real containers: an interactive
//! shell on a terminal driven through a pty this test opens (detached with ctrl-p
//! ctrl-q, attached again after the agent was killed with SIGKILL), a container reading
//! a line from stdin, and stdinOnce closing stdin after the first session.

mod common;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

fn pod(name: &str, image: &str, fields: &str, argv: &[&str]) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n{fields}    command: {argv:?}\n"
    )
}

/// `hostlet attach` on a terminal: the slave of a fresh pty is its stdio; what it
/// prints is collected from the master by a thread.
struct Terminal {
    child: Child,
    master: std::fs::File,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    fn attach(root: &Path, pod: &str) -> Terminal {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostlet"));
        cmd.args(["attach", "--root-dir"])
            .arg(root)
            .args(["-it", pod])
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().expect("spawn hostlet attach");
        let master = std::fs::File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every slave end is closed: the attach process is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            master,
            seen,
        }
    }

    fn type_in(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Types `line` until the terminal shows `want` (the shell may not read before its
    /// prompt is up, so the line is typed again after a while).
    fn until_shown(&mut self, line: &str, want: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30 * time_scale() as u64);
        while Instant::now() < deadline {
            self.type_in(format!("{line}\r").as_bytes());
            let retry = Instant::now() + Duration::from_secs(3);
            while Instant::now() < retry {
                if want(&self.text()) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!(
            "the terminal never showed the output of {line:?}:\n{}",
            self.text()
        );
    }

    /// ctrl-p ctrl-q, then the attach process must end on its own, successfully.
    fn detach(mut self) {
        self.type_in(&[0x10, 0x11]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "attach after detach: {st:?}\n{}", self.text());
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("attach still runs after ctrl-p ctrl-q:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `marker-` followed by a digit: the shell's output, not the typed `marker-$$`.
fn expanded(text: &str, prefix: &str) -> bool {
    text.match_indices(prefix)
        .any(|(i, _)| text[i + prefix.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

#[test]
fn interactive_tty_attach_detach_and_after_agent_kill() {
    let mut f = Fixture::new();
    let marker = format!("attach-tty-{}", std::process::id());
    write_manifest(
        &f.dirs,
        "shell.yaml",
        &pod(
            "shell",
            &f.image(),
            "    stdin: true\n    tty: true\n",
            &["sh", "-i", "-s", &marker],
        ),
    );
    let pid = f.container_pid(&marker);
    let root = f.dirs.root.clone();

    let mut t = Terminal::attach(&root, "shell");
    t.until_shown("echo marker-$$", |s| expanded(s, "marker-"));
    t.detach();
    assert!(
        process_exists(pid),
        "the shell keeps running after a detach"
    );
    // The terminal's output is the log's stdout stream, as the kubelet's runtimes write it.
    f.wait("the echo in the CRI log, stream stdout", || {
        cri_log_lines(&f.dirs.logs, "shell", "main")
            .iter()
            .any(|l| l.split(' ').nth(1) == Some("stdout") && expanded(l, "marker-"))
            .then_some(())
    });

    // The monitor owns the terminal: an agent killed and restarted changes nothing.
    f.agent.as_mut().unwrap().kill9();
    f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &[]));
    f.wait("the restarted agent to report the shell running", || {
        let st = f.pod_status("shell")?;
        st["containerStatuses"][0]["state"]["running"]
            .is_object()
            .then_some(())
    });
    let mut t = Terminal::attach(&root, "shell");
    t.until_shown("echo again-$((40+2))", |s| s.contains("again-42"));
    t.detach();
    assert_eq!(f.container_pid(&marker), pid, "the same shell");
}

/// `hostlet attach -i POD` with `input` on stdin (then its end, which detaches).
fn attach_input(root: &Path, pod: &str, input: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(["attach", "--root-dir"])
        .arg(root)
        .args(["-i", pod])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hostlet attach");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "attach -i {pod}: {out:?}");
    out
}

#[test]
fn stdin_pipe_and_stdin_once() {
    let f = Fixture::new();
    let id = std::process::id();
    let image = f.image();
    // Without stdinOnce stdin stays open across sessions: a second one still reaches cat.
    write_manifest(
        &f.dirs,
        "reader.yaml",
        &pod(
            "reader",
            &image,
            "    stdin: true\n",
            &[
                "sh",
                "-c",
                &format!("read line; echo got-$line; cat; echo reader-eof-{id}"),
            ],
        ),
    );
    write_manifest(
        &f.dirs,
        "once.yaml",
        &pod(
            "once",
            &image,
            "    stdin: true\n    stdinOnce: true\n",
            &[
                "sh",
                "-c",
                &format!("cat; echo stdin-closed-{id}; exec sleep 3600"),
            ],
        ),
    );
    let reader = f.container_pid(&format!("reader-eof-{id}"));
    f.container_pid(&format!("stdin-closed-{id}"));
    let root = f.dirs.root.clone();

    attach_input(&root, "reader", "hello\n");
    f.output("reader", "main", "got-hello");
    attach_input(&root, "reader", "second\n");
    f.output("reader", "main", "second");
    assert!(process_exists(reader));
    let log = cri_log_messages(&f.dirs.logs, "reader", "main");
    assert!(
        !log.iter().any(|l| l.contains("reader-eof")),
        "stdin was closed without stdinOnce: {log:?}"
    );

    attach_input(&root, "once", "abc\n");
    let log = f.output("once", "main", &format!("stdin-closed-{id}"));
    assert!(log.iter().any(|l| l == "abc"), "{log:?}");
    // A later session finds stdin closed, says so, and shows the output (until killed).
    let mut late = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(["attach", "--root-dir"])
        .arg(&root)
        .args(["-i", "once"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hostlet attach");
    let mut err = late.stderr.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") && err.read(&mut byte).unwrap_or(0) == 1 {
        line.push(byte[0]);
    }
    let _ = late.kill();
    let _ = late.wait();
    let line = String::from_utf8_lossy(&line);
    assert!(
        line.contains("the stdin of container main is not open"),
        "{line}"
    );
}
