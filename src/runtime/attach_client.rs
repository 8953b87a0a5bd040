//! `hostlet attach`'s side of [`super::attach`]: connects to a container's monitor and
//! relays this terminal until the operator detaches (ctrl-p ctrl-q, or the end of stdin)
//! or the container exits.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::attach::{self, Decoder, DetachKeys, Kind};
use super::terminal::{window_size, RawMode};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("attach session: {0}")]
    Io(#[from] std::io::Error),
    #[error("attach session: {0}")]
    Frame(#[from] attach::FrameError),
    #[error("attach session: the monitor closed the connection before its hello")]
    NoHello,
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The operator typed the detach sequence or closed stdin; the container runs on.
    Detached,
    /// The monitor closed the session: the container is gone.
    Exited,
}

/// What the operator asked for and what the container offers.
pub struct Session {
    sock: UnixStream,
    dec: Decoder,
    /// The container runs on a terminal.
    pub tty: bool,
    /// This session writes to the container's stdin.
    pub stdin: bool,
    /// The container's stdin is open (false: `stdin: false`, or `stdinOnce` and used).
    pub stdin_open: bool,
}

impl Session {
    pub fn connect(socket: &Path, want_stdin: bool) -> Result<Self, AttachError> {
        let mut sock = UnixStream::connect(socket).map_err(|source| AttachError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
        let flags = if want_stdin { attach::WANT_STDIN } else { 0 };
        sock.write_all(&attach::frame(Kind::Hello, &[flags]))?;
        let mut dec = Decoder::default();
        let mut buf = [0u8; 4096];
        let hello = loop {
            if let Some((kind, payload)) = dec.next_frame()? {
                if kind == Kind::Hello {
                    break payload.first().copied().unwrap_or(0);
                }
                continue;
            }
            match sock.read(&mut buf)? {
                0 => return Err(AttachError::NoHello),
                n => dec.push(&buf[..n]),
            }
        };
        let stdin_open = hello & attach::HAS_STDIN != 0;
        Ok(Self {
            sock,
            dec,
            tty: hello & attach::HAS_TTY != 0,
            stdin: want_stdin && stdin_open,
            stdin_open,
        })
    }

    /// Relays until the session ends. With `raw`, this terminal is in raw mode meanwhile
    /// and its window size follows to the container's.
    pub fn relay(mut self, raw: bool) -> Result<End, AttachError> {
        let _raw = raw.then(RawMode::enter);
        let sigfd = if self.tty {
            let mut mask = SigSet::empty();
            mask.add(Signal::SIGWINCH);
            let _ = mask.thread_block();
            SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok()
        } else {
            None
        };
        if self.tty {
            self.send_window_size()?;
        }
        let mut keys = DetachKeys::default();
        let mut buf = vec![0u8; 16 * 1024];
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        loop {
            // Frames already read (with the hello) first.
            while let Some((kind, payload)) = self.dec.next_frame()? {
                match kind {
                    Kind::Stdout => stdout.write_all(&payload).and_then(|_| stdout.flush())?,
                    Kind::Stderr => stderr.write_all(&payload)?,
                    _ => {}
                }
            }
            let stdin = std::io::stdin();
            let mut fds = vec![PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            if self.stdin {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            if let Some(s) = &sigfd {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(AttachError::Io(e.into())),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if ready[0] {
                match self.sock.read(&mut buf) {
                    Ok(0) => return Ok(End::Exited),
                    Ok(n) => self.dec.push(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return Ok(End::Exited),
                }
            }
            if self.stdin && ready[1] {
                let n = match nix::unistd::read(libc::STDIN_FILENO, &mut buf) {
                    Ok(0) => return Ok(End::Detached),
                    Ok(n) => n,
                    Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => 0,
                    Err(e) => return Err(AttachError::Io(e.into())),
                };
                let (send, detach) = keys.filter(&buf[..n]);
                if !send.is_empty() {
                    self.sock.write_all(&attach::frame(Kind::Stdin, &send))?;
                }
                if detach {
                    return Ok(End::Detached);
                }
            }
            if let Some(s) = &sigfd {
                if ready[ready.len() - 1] {
                    while let Ok(Some(_)) = s.read_signal() {}
                    self.send_window_size()?;
                }
            }
        }
    }

    fn send_window_size(&mut self) -> Result<(), AttachError> {
        if let Some((rows, cols)) = window_size() {
            let p = attach::resize_payload(rows, cols);
            self.sock.write_all(&attach::frame(Kind::Resize, &p))?;
        }
        Ok(())
    }
}
