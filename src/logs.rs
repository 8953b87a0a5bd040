//! CRI-format container log files: `<RFC3339Nano> <stream> <P|F> <text>`, one file per
//! container instance at `<pod-logs-dir>/<ns>_<pod>_<uid>/<container>/<restartCount>.log`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// Size-based rotation, the kubelet's `--container-log-max-size` and
/// `--container-log-max-files` (which counts the live file too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLimits {
    /// Rotate once the live file reaches this many bytes; 0 never rotates.
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// Splits a byte stream into CRI records; one per stream, both writing to the same file.
pub struct CriWriter {
    file: File,
    path: PathBuf,
    limits: Option<LogLimits>,
    /// Bytes in the live file, to decide when to rotate.
    size: u64,
    pending: [Vec<u8>; 2],
    out: Vec<u8>,
}

impl CriWriter {
    /// A writer that never rotates.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_inner(path, None)
    }

    /// A writer that rotates per `limits`; opening instance N also removes the logs of
    /// instances before N-1 (N-1 stays for `logs --previous`).
    pub fn open_rotating(path: &Path, limits: LogLimits) -> io::Result<Self> {
        remove_old_instances(path);
        Self::open_inner(path, Some(limits))
    }

    fn open_inner(path: &Path, limits: Option<LogLimits>) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            limits,
            size,
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
            self.size += self.out.len() as u64;
            self.out.clear();
        }
        match self.limits {
            Some(l) if l.max_size > 0 && self.size >= l.max_size => self.rotate(l),
            _ => Ok(()),
        }
    }

    /// Renames the live file aside, starts a new one, compresses the old one and drops
    /// the oldest rotated files beyond the limit. Readers following the old file keep
    /// their descriptor and see a new inode at the path.
    fn rotate(&mut self, limits: LogLimits) -> io::Result<()> {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%d-%H%M%S%.6f")
            .to_string();
        let mut aside = self.path.as_os_str().to_owned();
        aside.push(format!(".{stamp}"));
        let aside = PathBuf::from(aside);
        std::fs::rename(&self.path, &aside)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        if let Err(e) = compress(&aside) {
            tracing::warn!(file = %aside.display(), error = %e, "compressing rotated log");
        }
        prune_rotated(&self.path, limits.max_files.max(1) as usize - 1);
        Ok(())
    }
}

/// `FILE` → `FILE.gz`, then removes `FILE`.
fn compress(path: &Path) -> io::Result<()> {
    let mut gz_name = path.as_os_str().to_owned();
    gz_name.push(".gz");
    let gz = PathBuf::from(gz_name);
    let mut tmp_name = gz.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut input = File::open(path)?;
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&tmp)?, flate2::Compression::fast());
        io::copy(&mut input, &mut enc)?;
        enc.finish()?;
        std::fs::rename(&tmp, &gz)
    })();
    match result {
        Ok(()) => std::fs::remove_file(path),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The rotated files of a live log file, oldest first (their names sort by time).
pub fn rotated_files(live: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (live.parent(), live.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".tmp"))
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn prune_rotated(live: &Path, keep: usize) {
    let files = rotated_files(live);
    let excess = files.len().saturating_sub(keep);
    for f in &files[..excess] {
        if let Err(e) = std::fs::remove_file(f) {
            tracing::warn!(file = %f.display(), error = %e, "removing rotated log");
        }
    }
}

/// Removes the logs (live and rotated) of instances older than the previous one of the
/// container whose live file is `<n>.log`.
fn remove_old_instances(live: &Path) {
    let (Some(dir), Some(n)) = (
        live.parent(),
        live.file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_suffix(".log"))
            .and_then(|n| n.parse::<u32>().ok()),
    ) else {
        return;
    };
    let old = |name: &str| {
        let num = name.split('.').next().and_then(|k| k.parse::<u32>().ok());
        let is_log = name.split('.').nth(1) == Some("log");
        is_log && num.is_some_and(|k| k + 1 < n)
    };
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_str().is_some_and(old) {
            let _ = std::fs::remove_file(e.path());
        }
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
    fn rotates_compresses_and_bounds_files() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/1.log");
        let limits = LogLimits {
            max_size: 4096,
            max_files: 3,
        };
        let mut w = CriWriter::open_rotating(&path, limits).unwrap();
        let line = format!("{}\n", "y".repeat(100));
        for _ in 0..500 {
            w.write(Stream::Stdout, line.as_bytes()).unwrap();
        }
        w.finish().unwrap();
        let rotated = rotated_files(&path);
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        for f in &rotated {
            assert!(f.to_str().unwrap().ends_with(".gz"), "{f:?}");
            let mut text = String::new();
            flate2::read::GzDecoder::new(File::open(f).unwrap())
                .read_to_string(&mut text)
                .unwrap();
            assert!(text.lines().all(|l| l.ends_with(&"y".repeat(100))), "{f:?}");
        }
        assert!(std::fs::metadata(&path).unwrap().len() < 4096 + 200);
        let dir_size: u64 = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(dir_size < 3 * 4096 + 200, "{dir_size}");
    }

    #[test]
    fn opening_an_instance_drops_all_but_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("c");
        std::fs::create_dir_all(&c).unwrap();
        for f in [
            "0.log",
            "0.log.20240101-000000.000000.gz",
            "1.log",
            "2.log",
            "10.log",
            "notes",
        ] {
            std::fs::write(c.join(f), b"x").unwrap();
        }
        CriWriter::open_rotating(&c.join("3.log"), LogLimits::default()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&c)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["10.log", "2.log", "3.log", "notes"]);
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
