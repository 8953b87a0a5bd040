//! The monitor's side of `hostlet attach` ([`super::attach`]): it holds the container's
//! stdin (a pipe's write end, or the terminal's master) and relays attach sessions, so
//! a session needs neither the agent nor any state outside this process. Output still
//! goes to the CRI log first; sessions get a copy. Nothing here may block the monitor:
//! every descriptor is non-blocking, a session that does not keep up is dropped, and
//! input waits in a buffer until the container reads it.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::PollFlags;

use super::attach::{self, Decoder, Kind};
use super::terminal::set_window_size;
use crate::logs::Stream;

/// Output queued for a session that does not read it; beyond this it is dropped.
const CLIENT_BACKLOG: usize = 4 << 20;
/// Input queued for a container that does not read it; sessions wait beyond this.
const STDIN_BACKLOG: usize = 1 << 20;
/// What a terminal's line discipline turns into end of file for its reader.
const EOT: u8 = 0x04;

/// What a polled descriptor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Listener,
    Client(usize),
    Stdin,
}

struct Client {
    sock: UnixStream,
    dec: Decoder,
    out: Vec<u8>,
    hello: bool,
    stdin: bool,
}

pub struct AttachServer {
    path: PathBuf,
    listener: Option<UnixListener>,
    clients: Vec<Client>,
    /// Where input goes, None once closed (or never open: `stdin: false`).
    stdin: Option<OwnedFd>,
    pending: Vec<u8>,
    stdin_once: bool,
    /// The terminal's master, for window sizes (`tty: true`).
    master: Option<OwnedFd>,
}

pub fn set_nonblocking(fd: &impl AsRawFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

impl AttachServer {
    /// Listens on `dir`/attach.sock. Without the socket the container still runs (its
    /// stdin stays open, unattached): a warning, not a failed start.
    pub fn new(
        dir: &Path,
        stdin: Option<OwnedFd>,
        stdin_once: bool,
        master: Option<OwnedFd>,
    ) -> Self {
        let path = dir.join(attach::SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .and_then(|l| {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .inspect_err(|e| tracing::warn!(path = %path.display(), error = %e, "attach socket"))
            .ok();
        if let Some(fd) = &stdin {
            let _ = set_nonblocking(fd);
        }
        Self {
            path,
            listener,
            clients: Vec::new(),
            stdin,
            pending: Vec::new(),
            stdin_once,
            master,
        }
    }

    /// The descriptors to poll and what for.
    pub fn poll_fds(&self) -> Vec<(Target, BorrowedFd<'_>, PollFlags)> {
        let mut v = Vec::new();
        if let Some(l) = &self.listener {
            v.push((Target::Listener, l.as_fd(), PollFlags::POLLIN));
        }
        let take_input = self.pending.len() < STDIN_BACKLOG;
        for (i, c) in self.clients.iter().enumerate() {
            let mut f = PollFlags::empty();
            if take_input {
                f |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                f |= PollFlags::POLLOUT;
            }
            // Hang-ups are reported whatever was asked for.
            v.push((Target::Client(i), c.sock.as_fd(), f));
        }
        if let (Some(fd), false) = (&self.stdin, self.pending.is_empty()) {
            v.push((Target::Stdin, fd.as_fd(), PollFlags::POLLOUT));
        }
        v
    }

    /// Handles what poll found on the descriptors of [`Self::poll_fds`].
    pub fn on_ready(&mut self, ready: &[(Target, PollFlags)]) {
        let mut gone = Vec::new();
        let mut accept = false;
        for &(t, flags) in ready {
            if flags.is_empty() {
                continue;
            }
            match t {
                Target::Listener => accept = true,
                Target::Client(i) => {
                    if !self.serve(i) {
                        gone.push(i);
                    }
                }
                Target::Stdin => self.write_stdin(),
            }
        }
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            let c = self.clients.remove(i);
            self.detached(&c);
        }
        if accept {
            self.accept();
        }
    }

    /// A copy of the container's output for every session.
    pub fn output(&mut self, stream: Stream, bytes: &[u8]) {
        let kind = match stream {
            Stream::Stdout => Kind::Stdout,
            Stream::Stderr => Kind::Stderr,
        };
        let mut gone = Vec::new();
        for (i, c) in self.clients.iter_mut().enumerate() {
            if !c.hello {
                continue;
            }
            attach::encode(&mut c.out, kind, bytes);
            if !flush(c) || c.out.len() > CLIENT_BACKLOG {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            let c = self.clients.remove(i);
            tracing::warn!("attach session dropped: it does not read the output");
            self.detached(&c);
        }
    }

    /// The container is gone: sessions end (they see the connection close).
    pub fn close(&mut self) {
        for c in &mut self.clients {
            let _ = c.sock.set_nonblocking(false);
            let _ = c
                .sock
                .set_write_timeout(Some(std::time::Duration::from_millis(500)));
            let _ = c.sock.write_all(&c.out);
        }
        self.clients.clear();
        self.listener = None;
        let _ = std::fs::remove_file(&self.path);
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        loop {
            match l.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_ok() {
                        self.clients.push(Client {
                            sock,
                            dec: Decoder::default(),
                            out: Vec::new(),
                            hello: false,
                            stdin: false,
                        });
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads and writes what session `i` has; false when it is over.
    fn serve(&mut self, i: usize) -> bool {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let c = &mut self.clients[i];
            if !flush(c) {
                return false;
            }
            if self.pending.len() >= STDIN_BACKLOG {
                return true;
            }
            match c.sock.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => c.dec.push(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
            loop {
                let frame = match self.clients[i].dec.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "attach session");
                        return false;
                    }
                };
                self.frame(i, frame);
            }
        }
    }

    fn frame(&mut self, i: usize, (kind, payload): (Kind, Vec<u8>)) {
        let stdin_open = self.stdin.is_some();
        let tty = self.master.is_some();
        let c = &mut self.clients[i];
        match kind {
            Kind::Hello if !c.hello => {
                c.hello = true;
                c.stdin =
                    stdin_open && payload.first().is_some_and(|f| f & attach::WANT_STDIN != 0);
                let mut flags = 0;
                if tty {
                    flags |= attach::HAS_TTY;
                }
                if stdin_open {
                    flags |= attach::HAS_STDIN;
                }
                attach::encode(&mut c.out, Kind::Hello, &[flags]);
            }
            Kind::Stdin if c.stdin && stdin_open => {
                self.pending.extend_from_slice(&payload);
                self.write_stdin();
            }
            Kind::Resize => {
                if let (Some(m), Some((rows, cols))) =
                    (&self.master, attach::parse_resize(&payload))
                {
                    set_window_size(m.as_raw_fd(), rows, cols);
                }
            }
            _ => {}
        }
    }

    fn write_stdin(&mut self) {
        let Some(fd) = &self.stdin else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match nix::unistd::write(fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(nix::Error::EINTR) => {}
                Err(nix::Error::EAGAIN) => return,
                // The container closed its end: nothing will read input any more.
                Err(_) => {
                    self.stdin = None;
                    self.pending.clear();
                    return;
                }
            }
        }
    }

    /// A session ended. With `stdinOnce`, the first one that wrote stdin closes it, as
    /// the kubelet does; on a terminal that is an end-of-file character, as the container
    /// keeps its terminal for output.
    fn detached(&mut self, c: &Client) {
        if !(c.stdin && self.stdin_once) || self.stdin.is_none() {
            return;
        }
        self.write_stdin();
        if self.master.is_some() {
            self.pending.push(EOT);
            self.write_stdin();
        }
        tracing::info!("stdinOnce: the first attach session ended, stdin closed");
        self.stdin = None;
        self.pending.clear();
    }
}

/// Writes what `c` has queued; false when the session is gone.
fn flush(c: &mut Client) -> bool {
    while !c.out.is_empty() {
        match c.sock.write(&c.out) {
            Ok(0) => return false,
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}
