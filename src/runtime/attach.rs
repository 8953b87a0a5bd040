//! The attach protocol between `hostlet attach` and a container's monitor, over the
//! monitor's unix socket `<container dir>/attach.sock` (mode 0600: root only). The monitor
//! owns the container's stdin and terminal, so a session survives nothing but itself: the
//! agent may be restarted or killed in between.
//!
//! Every message is a frame: one kind byte, a big-endian u32 length, the payload. The
//! client opens with [`Kind::Hello`] (payload: [`WANT_STDIN`] or 0); the monitor answers
//! with its own hello ([`HAS_TTY`], [`HAS_STDIN`]) and then sends output frames. The
//! client sends input and window sizes; closing the connection is a detach.

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// Client hello flag: this session writes to the container's stdin.
pub const WANT_STDIN: u8 = 1;
/// Monitor hello flag: the container runs on a terminal (output is one stream).
pub const HAS_TTY: u8 = 1;
/// Monitor hello flag: the container's stdin is open to attach sessions.
pub const HAS_STDIN: u8 = 2;

/// A frame larger than this is a broken peer, not data.
pub const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hello = 0,
    /// Client → monitor: bytes for the container's stdin.
    Stdin = 1,
    /// Client → monitor: the terminal's size, rows then columns, two u16 each.
    Resize = 2,
    Stdout = 3,
    Stderr = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Hello,
            1 => Self::Stdin,
            2 => Self::Resize,
            3 => Self::Stdout,
            4 => Self::Stderr,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("frame of {0} bytes is larger than {MAX_FRAME}")]
    TooLarge(usize),
}

/// Appends one frame to `out`.
pub fn encode(out: &mut Vec<u8>, kind: Kind, payload: &[u8]) {
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

pub fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    encode(&mut v, kind, payload);
    v
}

pub fn resize_payload(rows: u16, cols: u16) -> [u8; 4] {
    let [r0, r1] = rows.to_be_bytes();
    let [c0, c1] = cols.to_be_bytes();
    [r0, r1, c0, c1]
}

pub fn parse_resize(p: &[u8]) -> Option<(u16, u16)> {
    match p {
        [r0, r1, c0, c1] => Some((
            u16::from_be_bytes([*r0, *r1]),
            u16::from_be_bytes([*c0, *c1]),
        )),
        _ => None,
    }
}

/// Collects bytes as they arrive and hands out whole frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, None until one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<(Kind, Vec<u8>)>, FrameError> {
        let Some(&k) = self.buf.first() else {
            return Ok(None);
        };
        let kind = Kind::from_byte(k).ok_or(FrameError::Kind(k))?;
        let Some(len) = self.buf.get(1..5) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }
}

/// ctrl-p ctrl-q, docker's and kubectl's detach sequence.
pub const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// Watches the operator's keystrokes for the detach sequence. A ctrl-p that turns out
/// not to start it is passed on with what follows, so the container still gets it.
#[derive(Debug, Default)]
pub struct DetachKeys {
    /// How many bytes of the sequence were seen at the end of the last input.
    matched: usize,
}

impl DetachKeys {
    /// What to send on of `input`, and whether the sequence is complete (what follows it
    /// in `input` is dropped: the session is over).
    pub fn filter(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == DETACH_KEYS[self.matched] {
                self.matched += 1;
                if self.matched == DETACH_KEYS.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&DETACH_KEYS[..self.matched]);
            self.matched = 0;
            if b == DETACH_KEYS[0] {
                self.matched = 1;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut wire = frame(Kind::Hello, &[WANT_STDIN]);
        encode(&mut wire, Kind::Stdin, b"echo hi\r");
        encode(&mut wire, Kind::Resize, &resize_payload(24, 80));
        encode(&mut wire, Kind::Stdout, b"");
        let mut d = Decoder::default();
        let mut got = Vec::new();
        // One byte at a time: a frame is handed out only once whole.
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            [
                (Kind::Hello, vec![WANT_STDIN]),
                (Kind::Stdin, b"echo hi\r".to_vec()),
                (Kind::Resize, vec![0, 24, 0, 80]),
                (Kind::Stdout, vec![]),
            ]
        );
        assert_eq!(parse_resize(&got[2].1), Some((24, 80)));
        assert_eq!(parse_resize(b"abc"), None);
    }

    #[test]
    fn broken_frames_are_errors() {
        let mut d = Decoder::default();
        d.push(&[9, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::Kind(9)));
        let mut d = Decoder::default();
        d.push(&[1, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge(u32::MAX as usize)));
    }

    #[test]
    fn detach_sequence_ends_the_session() {
        let mut k = DetachKeys::default();
        assert_eq!(k.filter(b"ls\r"), (b"ls\r".to_vec(), false));
        assert_eq!(k.filter(b"a\x10\x11rest"), (b"a".to_vec(), true));
        // Split across reads.
        assert_eq!(k.filter(b"x\x10"), (b"x".to_vec(), false));
        assert_eq!(k.filter(b"\x11"), (vec![], true));
    }

    #[test]
    fn a_lone_ctrl_p_reaches_the_container() {
        let mut k = DetachKeys::default();
        assert_eq!(k.filter(b"\x10a"), (b"\x10a".to_vec(), false));
        assert_eq!(k.filter(b"\x10"), (vec![], false));
        assert_eq!(k.filter(b"\x10\x10\x11"), (b"\x10\x10".to_vec(), true));
        assert_eq!(k.filter(b"\x11"), (b"\x11".to_vec(), false));
    }
}
