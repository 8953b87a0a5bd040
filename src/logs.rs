//! CRI-format container log files: `<RFC3339Nano> <stream> <P|F> <text>`, one file per
//! container instance at `<pod-logs-dir>/<ns>_<pod>_<uid>/<container>/<restartCount>.log`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Lines longer than this are split into partial (`P`) records, as containerd does, so a
/// container that never prints a newline cannot make the writer buffer without bound.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

pub fn pod_log_dir(logs_root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    logs_root.join(format!("{namespace}_{name}_{uid}"))
}

pub fn container_log_path(pod_dir: &Path, container: &str, restart_count: u32) -> PathBuf {
    pod_dir.join(container).join(format!("{restart_count}.log"))
}

/// Formats a timestamp as RFC 3339 with nanoseconds, in UTC (what `kubectl logs` parses).
pub fn rfc3339_nano(ts: jiff::Timestamp) -> String {
    format!("{ts:.9}")
}

/// Splits a byte stream into CRI records; one per stream, both writing to the same file.
pub struct CriWriter {
    file: File,
    pending: [Vec<u8>; 2],
    out: Vec<u8>,
}

impl CriWriter {
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file,
            pending: [Vec::new(), Vec::new()],
            out: Vec::with_capacity(4096),
        })
    }

    /// Appends what the container wrote; complete lines become `F` records, runs longer
    /// than [`MAX_LINE`] become `P` records, the rest waits for its newline.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> io::Result<()> {
        let ts = rfc3339_nano(jiff::Timestamp::now());
        let idx = stream as usize;
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    let mut line = std::mem::take(&mut self.pending[idx]);
                    line.extend_from_slice(&data[..nl]);
                    self.record(&ts, stream, 'F', &line);
                    data = &data[nl + 1..];
                }
                None => {
                    self.pending[idx].extend_from_slice(data);
                    data = &[];
                }
            }
            while self.pending[idx].len() >= MAX_LINE {
                let rest = self.pending[idx].split_off(MAX_LINE);
                let chunk = std::mem::replace(&mut self.pending[idx], rest);
                self.record(&ts, stream, 'P', &chunk);
            }
        }
        self.flush_out()
    }

    /// Writes whatever is left without a newline at the end of a stream. The text is
    /// complete (the stream ended), so it is an `F` record.
    pub fn finish(&mut self) -> io::Result<()> {
        let ts = rfc3339_nano(jiff::Timestamp::now());
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.pending[stream as usize]);
            if !line.is_empty() {
                self.record(&ts, stream, 'F', &line);
            }
        }
        self.flush_out()
    }

    fn record(&mut self, ts: &str, stream: Stream, tag: char, text: &[u8]) {
        self.out.extend_from_slice(ts.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(stream.as_str().as_bytes());
        self.out.push(b' ');
        self.out.push(tag as u8);
        self.out.push(b' ');
        self.out.extend_from_slice(text);
        self.out.push(b'\n');
    }

    fn flush_out(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.file.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().unwrap();
                assert!(ts.parse::<jiff::Timestamp>().is_ok(), "bad timestamp {ts}");
                (
                    it.next().unwrap().to_string(),
                    it.next().unwrap().to_string(),
                    it.next().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn splits_lines_partials_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let mut w = CriWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"lo\nworld\n\ntail").unwrap();
        w.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 3]).unwrap();
        w.finish().unwrap();
        let got = lines(&path);
        let want = [
            ("stderr", "F", "oops".to_string()),
            ("stdout", "F", "hello".to_string()),
            ("stdout", "F", "world".to_string()),
            ("stdout", "F", String::new()),
            ("stdout", "P", format!("tail{}", "x".repeat(MAX_LINE - 4))),
            ("stdout", "F", "xxxxxxx".to_string()),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want.iter()) {
            assert_eq!((g.0.as_str(), g.1.as_str(), &g.2), (w.0, w.1, &w.2));
        }
    }

    #[test]
    fn paths_follow_kubelet_layout() {
        let d = pod_log_dir(Path::new("/var/log/pods"), "default", "web-n1", "abc");
        assert_eq!(d, Path::new("/var/log/pods/default_web-n1_abc"));
        assert_eq!(
            container_log_path(&d, "app", 2),
            Path::new("/var/log/pods/default_web-n1_abc/app/2.log")
        );
    }
}
