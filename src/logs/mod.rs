//! CRI-format container log files: `<RFC3339Nano> <stream> <P|F> <text>`, one file per
//! container instance at `<pod-logs-dir>/<ns>_<pod>_<uid>/<container>/<restartCount>.log`.

mod writer;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use writer::CriWriter;

/// Opens a log file for reading without following a symlink in its last component, and
/// only when it is a regular file. Log directories can be reachable from a container
/// (a log shipper with a hostPath of the pod logs dir): a link planted there must not
/// make the root-run monitor or `hostlet logs` read or write another host file.
pub fn open_log(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Lines longer than this are split into partial (`P`) records, as containerd does, so a
/// container that never prints a newline cannot make the writer buffer without bound.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub(crate) fn as_str(self) -> &'static str {
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

/// The container's output in the last `lines` lines of its CRI log file, cut to its last
/// `bytes` bytes: what the kubelet puts in a terminated container's message with
/// `FallbackToLogsOnError` (`readLastStringFromContainerLogs`: 80 lines, 2048 bytes).
pub fn tail_output(path: &Path, lines: usize, bytes: usize) -> io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = open_log(path)?;
    // 80 records of at most MAX_LINE bytes each, plus their CRI prefixes, is all we need.
    let want = (lines * (MAX_LINE + 64)) as u64;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(want)))?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw)?;
    let mut out: Vec<u8> = Vec::new();
    let mut line_ends: usize = 0;
    for record in raw.split(|b| *b == b'\n').filter(|r| !r.is_empty()) {
        let mut it = record.splitn(4, |b| *b == b' ');
        let (Some(_ts), Some(_stream), Some(tag)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        out.extend_from_slice(it.next().unwrap_or(b""));
        if tag != b"P" {
            out.push(b'\n');
            line_ends += 1;
        }
    }
    // Keep the last `lines` lines, then the last `bytes` bytes of them.
    let mut skip = line_ends.saturating_sub(lines);
    let mut start = 0;
    while skip > 0 {
        match out[start..].iter().position(|b| *b == b'\n') {
            Some(i) => start += i + 1,
            None => break,
        }
        skip -= 1;
    }
    let tail = &out[start..];
    let tail = &tail[tail.len().saturating_sub(bytes)..];
    Ok(String::from_utf8_lossy(tail).into_owned())
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

/// What a container's log writer could not write, as the monitor reports it to the agent
/// (`log-drops.json` in the container's state dir). Counts are for one container instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropStats {
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
    /// Lines are being dropped now: the last write failed and none has succeeded since.
    pub dropping: bool,
    /// Episodes so far (an episode ends when a write succeeds again).
    pub episodes: u64,
    /// Why the current or last episode began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `FILE` → `FILE.gz`, then removes `FILE`.
pub(crate) fn compress(path: &Path) -> io::Result<()> {
    let mut gz_name = path.as_os_str().to_owned();
    gz_name.push(".gz");
    let gz = PathBuf::from(gz_name);
    let mut tmp_name = gz.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut input = open_log(path)?;
        // A leftover temp file (or a planted link) goes; the new one is made, not reused.
        let _ = std::fs::remove_file(&tmp);
        let out = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?
        };
        let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
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

pub(crate) fn prune_rotated(live: &Path, keep: usize) {
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
pub(crate) fn remove_old_instances(live: &Path) {
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

    #[test]
    fn tail_output_is_the_last_lines_then_the_last_bytes() {
        let dir = std::env::temp_dir().join(format!("hostlet-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("0.log");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!(
                "2026-01-01T00:00:00.000000000Z stdout F line {i}\n"
            ));
        }
        text.push_str("2026-01-01T00:00:00.000000000Z stderr P half \n");
        text.push_str("2026-01-01T00:00:00.000000000Z stderr F and end\n");
        std::fs::write(&p, &text).unwrap();
        let out = tail_output(&p, 80, 2048).unwrap();
        assert!(out.starts_with("line 21\n"), "{out}");
        assert!(out.ends_with("line 99\nhalf and end\n"), "{out}");
        let short = tail_output(&p, 80, 21).unwrap();
        assert_eq!(short, "line 99\nhalf and end\n");
        std::fs::remove_dir_all(&dir).unwrap();
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
