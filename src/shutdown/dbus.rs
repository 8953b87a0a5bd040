//! A minimal D-Bus client over the system bus's Unix socket: EXTERNAL auth with unix-fd
//! passing, method calls with string/bool/int arguments, replies and signals read with
//! the file descriptors they carry (SCM_RIGHTS). Little-endian messages only, which is
//! what every bus on Linux/x86 and arm64 sends. Blocking: run it on its own thread.

use std::collections::VecDeque;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("{path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("d-bus i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("d-bus authentication refused: {0}")]
    Auth(String),
    #[error("malformed d-bus message: {0}")]
    Malformed(&'static str),
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
    #[error("the bus closed the connection")]
    Closed,
}

/// An argument of a method call.
pub enum Arg<'a> {
    Str(&'a str),
    U32(u32),
    I32(i32),
    Bool(bool),
}

impl Arg<'_> {
    fn sig(&self) -> char {
        match self {
            Arg::Str(_) => 's',
            Arg::U32(_) => 'u',
            Arg::I32(_) => 'i',
            Arg::Bool(_) => 'b',
        }
    }
}

pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

/// A message received.
#[derive(Debug, Default)]
pub struct Message {
    pub kind: u8,
    pub reply_serial: Option<u32>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub signature: String,
    pub body: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

fn pad(buf: &mut Vec<u8>, to: usize) {
    while buf.len() % to != 0 {
        buf.push(0);
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    pad(buf, 4);
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

fn put_sig(buf: &mut Vec<u8>, s: &str) {
    buf.push(s.len() as u8);
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

/// Encodes a method call.
pub fn encode_call(
    serial: u32,
    dest: &str,
    path: &str,
    iface: &str,
    member: &str,
    args: &[Arg<'_>],
) -> Vec<u8> {
    let mut body = Vec::new();
    let mut sig = String::new();
    for a in args {
        sig.push(a.sig());
        match a {
            Arg::Str(s) => put_str(&mut body, s),
            Arg::U32(v) => {
                pad(&mut body, 4);
                body.extend_from_slice(&v.to_le_bytes());
            }
            Arg::I32(v) => {
                pad(&mut body, 4);
                body.extend_from_slice(&v.to_le_bytes());
            }
            Arg::Bool(b) => {
                pad(&mut body, 4);
                body.extend_from_slice(&u32::from(*b).to_le_bytes());
            }
        }
    }
    let mut m = vec![b'l', METHOD_CALL, 0, 1];
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(&serial.to_le_bytes());
    m.extend_from_slice(&[0; 4]); // fields' length, set below
    let field = |m: &mut Vec<u8>, code: u8, t: &str, v: &str| {
        pad(m, 8);
        m.push(code);
        put_sig(m, t);
        if t == "g" {
            put_sig(m, v);
        } else {
            put_str(m, v);
        }
    };
    field(&mut m, 1, "o", path);
    field(&mut m, 2, "s", iface);
    field(&mut m, 3, "s", member);
    field(&mut m, 6, "s", dest);
    if !sig.is_empty() {
        field(&mut m, 8, "g", &sig);
    }
    let len = (m.len() - 16) as u32;
    m[12..16].copy_from_slice(&len.to_le_bytes());
    pad(&mut m, 8);
    m.extend_from_slice(&body);
    m
}

/// Reads the body's values in order, aligned from the body's start.
pub struct BodyReader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> BodyReader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Self { b, pos: 0 }
    }
    fn align(&mut self, n: usize) {
        self.pos = self.pos.div_ceil(n) * n;
    }
    pub fn u32(&mut self) -> Result<u32, DbusError> {
        self.align(4);
        let v = self
            .b
            .get(self.pos..self.pos + 4)
            .ok_or(DbusError::Malformed("short body"))?;
        self.pos += 4;
        Ok(u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, DbusError> {
        self.align(8);
        let v = self
            .b
            .get(self.pos..self.pos + 8)
            .ok_or(DbusError::Malformed("short body"))?;
        self.pos += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(v);
        Ok(u64::from_le_bytes(a))
    }
    pub fn str(&mut self) -> Result<String, DbusError> {
        let n = self.u32()? as usize;
        let v = self
            .b
            .get(self.pos..self.pos + n)
            .ok_or(DbusError::Malformed("short string"))?;
        self.pos += n + 1;
        Ok(String::from_utf8_lossy(v).into_owned())
    }
    pub fn sig(&mut self) -> Result<String, DbusError> {
        let n = *self
            .b
            .get(self.pos)
            .ok_or(DbusError::Malformed("short signature"))? as usize;
        let v = self
            .b
            .get(self.pos + 1..self.pos + 1 + n)
            .ok_or(DbusError::Malformed("short signature"))?;
        self.pos += n + 2;
        Ok(String::from_utf8_lossy(v).into_owned())
    }
}

/// Parses the header fields and body of one complete message in `buf` (its length
/// known); `None` while incomplete. Returns the message and its length.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize, u32)>, DbusError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    if buf[0] != b'l' {
        return Err(DbusError::Malformed("big-endian message"));
    }
    let u = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]) as usize;
    let (body_len, fields_len) = (u(4), u(12));
    let body_at = (16 + fields_len).div_ceil(8) * 8;
    let total = body_at + body_len;
    if buf.len() < total {
        return Ok(None);
    }
    let mut m = Message {
        kind: buf[1],
        ..Default::default()
    };
    let mut fds = 0;
    let mut r = BodyReader {
        b: &buf[..16 + fields_len],
        pos: 16,
    };
    while r.pos < 16 + fields_len {
        r.align(8);
        if r.pos >= 16 + fields_len {
            break;
        }
        let code = buf[r.pos];
        r.pos += 1;
        let t = r.sig()?;
        match t.as_str() {
            "s" | "o" => {
                let v = r.str()?;
                match code {
                    2 => m.interface = Some(v),
                    3 => m.member = Some(v),
                    4 => m.error_name = Some(v),
                    _ => {}
                }
            }
            "g" => {
                let v = r.sig()?;
                if code == 8 {
                    m.signature = v;
                }
            }
            "u" => {
                let v = r.u32()?;
                match code {
                    5 => m.reply_serial = Some(v),
                    9 => fds = v,
                    _ => {}
                }
            }
            _ => return Err(DbusError::Malformed("unknown header field type")),
        }
    }
    m.body = buf[body_at..total].to_vec();
    Ok(Some((m, total, fds)))
}

/// A connection to a bus.
pub struct Conn {
    sock: UnixStream,
    serial: u32,
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    /// Signals read while waiting for a reply.
    pending: VecDeque<Message>,
}

/// The system bus's socket (`DBUS_SYSTEM_BUS_ADDRESS=unix:path=...` or the default).
pub fn system_bus_path() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .and_then(|a| {
            a.strip_prefix("unix:path=")
                .map(|p| p.split(',').next().unwrap_or(p).to_string())
        })
        .unwrap_or_else(|| "/run/dbus/system_bus_socket".into())
}

impl Conn {
    /// Connects, authenticates as this process's uid, asks for fd passing, says Hello.
    pub fn connect(path: &Path) -> Result<Conn, DbusError> {
        let mut sock = UnixStream::connect(path).map_err(|source| DbusError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        let uid = nix::unistd::getuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        sock.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let line = read_line(&mut sock)?;
        if !line.starts_with("OK ") {
            return Err(DbusError::Auth(line));
        }
        sock.write_all(b"NEGOTIATE_UNIX_FD\r\n")?;
        let line = read_line(&mut sock)?;
        if line != "AGREE_UNIX_FD" {
            return Err(DbusError::Auth(line));
        }
        sock.write_all(b"BEGIN\r\n")?;
        let mut c = Conn {
            sock,
            serial: 0,
            buf: Vec::new(),
            fds: VecDeque::new(),
            pending: VecDeque::new(),
        };
        c.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            &[],
        )?;
        Ok(c)
    }

    /// Calls a method and waits for its reply (an error reply is an error).
    pub fn call(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[Arg<'_>],
    ) -> Result<Message, DbusError> {
        self.serial += 1;
        let serial = self.serial;
        self.sock
            .write_all(&encode_call(serial, dest, path, iface, member, args))?;
        loop {
            let m = self.read()?;
            if m.reply_serial != Some(serial) {
                if m.kind == SIGNAL {
                    self.pending.push_back(m);
                }
                continue;
            }
            if m.kind == ERROR {
                let message = BodyReader::new(&m.body).str().unwrap_or_default();
                return Err(DbusError::Remote {
                    name: m.error_name.unwrap_or_default(),
                    message,
                });
            }
            return Ok(m);
        }
    }

    /// The next signal.
    pub fn next_signal(&mut self) -> Result<Message, DbusError> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(m);
        }
        loop {
            let m = self.read()?;
            if m.kind == SIGNAL {
                return Ok(m);
            }
        }
    }

    fn read(&mut self) -> Result<Message, DbusError> {
        loop {
            if let Some((mut m, len, nfds)) = decode(&self.buf)? {
                self.buf.drain(..len);
                for _ in 0..nfds {
                    if let Some(fd) = self.fds.pop_front() {
                        m.fds.push(fd);
                    }
                }
                return Ok(m);
            }
            let mut chunk = [0u8; 4096];
            let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 8]);
            let mut iov = [IoSliceMut::new(&mut chunk)];
            let msg = recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            let n = msg.bytes;
            for c in msg.cmsgs().map_err(std::io::Error::from)? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for fd in fds {
                        // SAFETY: the kernel just installed `fd` in this process for us.
                        self.fds.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
            }
            if n == 0 {
                return Err(DbusError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn read_line(sock: &mut UnixStream) -> Result<String, DbusError> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n") {
        if sock.read(&mut b)? == 0 {
            return Err(DbusError::Closed);
        }
        out.push(b[0]);
        if out.len() > 4096 {
            return Err(DbusError::Auth("overlong line".into()));
        }
    }
    out.truncate(out.len() - 2);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_decodes_back_to_its_fields() {
        let m = encode_call(
            7,
            "org.freedesktop.login1",
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager",
            "Inhibit",
            &[
                Arg::Str("shutdown"),
                Arg::Str("hostlet"),
                Arg::Str("why"),
                Arg::Str("delay"),
            ],
        );
        let (d, len, fds) = decode(&m).unwrap().unwrap();
        assert_eq!((len, fds), (m.len(), 0));
        assert_eq!(d.kind, METHOD_CALL);
        assert_eq!(
            d.interface.as_deref(),
            Some("org.freedesktop.login1.Manager")
        );
        assert_eq!(d.member.as_deref(), Some("Inhibit"));
        assert_eq!(d.signature, "ssss");
        let mut r = BodyReader::new(&d.body);
        let got: Vec<String> = (0..4).map(|_| r.str().unwrap()).collect();
        assert_eq!(got, ["shutdown", "hostlet", "why", "delay"]);
        // Incomplete input waits for more.
        assert!(decode(&m[..m.len() - 1]).unwrap().is_none());
        assert!(decode(b"B\x01\x00\x01xxxxxxxxxxxxxxxx").is_err());
    }
}
