//! The CRI log writer of one container instance. It never holds more than one read's worth
//! of records: what cannot be written (a full disk, an I/O error, a log file removed or a
//! rotation that keeps failing) is dropped and counted, never queued, and the first record
//! written once writes succeed again says how much was dropped. The container is never
//! blocked or signalled for it: the monitor keeps draining its pipes whatever the disk does.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{compress, prune_rotated, remove_old_instances, rfc3339_nano};
use super::{DropStats, LogLimits, Stream, MAX_LINE};

/// How often the writer looks again at a disk that failed it, at the path of its file and
/// at a rotation that failed. Between two looks a flood is dropped without a system call.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// While dropping, the next write is tried after this long.
    retry: Duration,
    /// How often the path is checked to still name the file being written.
    check: Duration,
    /// After a failed rotation, the next one is tried after this long.
    rotate_retry: Duration,
}

const TIMING: Timing = Timing {
    retry: Duration::from_millis(250),
    check: Duration::from_millis(250),
    rotate_retry: Duration::from_secs(1),
};

/// Splits a byte stream into CRI records; one per stream, both writing to the same file.
pub struct CriWriter {
    file: File,
    path: PathBuf,
    limits: Option<LogLimits>,
    /// Bytes in the live file, to decide when to rotate.
    size: u64,
    pending: [Vec<u8>; 2],
    /// Records not yet written: at most what one `write` call produced.
    out: Vec<u8>,
    out_lines: u64,
    stats: DropStats,
    /// Lines and bytes dropped in the current episode, for the record that ends it.
    episode: (u64, u64),
    /// While dropping, no write is tried before this.
    retry_at: Option<Instant>,
    /// A failed write left part of a record in the file.
    torn: bool,
    /// The path no longer names `file` and could not be reopened: nothing goes to `file`.
    detached: bool,
    /// Lines and bytes written since the path was last seen naming `file`; lost if the
    /// file was removed meanwhile.
    unchecked: (u64, u64),
    check_at: Instant,
    rotate_at: Option<Instant>,
    rotate_error: Option<String>,
    timing: Timing,
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
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            limits,
            size,
            pending: [Vec::new(), Vec::new()],
            out: Vec::with_capacity(4096),
            out_lines: 0,
            stats: DropStats::default(),
            episode: (0, 0),
            retry_at: None,
            torn: false,
            detached: false,
            unchecked: (0, 0),
            check_at: Instant::now() + TIMING.check,
            rotate_at: None,
            rotate_error: None,
            timing: TIMING,
        })
    }

    /// What could not be written so far.
    pub fn stats(&self) -> &DropStats {
        &self.stats
    }

    /// Appends what the container wrote; complete lines become `F` records, runs longer
    /// than [`MAX_LINE`] become `P` records, the rest waits for its newline. Records that
    /// cannot be written are dropped and counted in [`CriWriter::stats`].
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) {
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
        self.flush();
    }

    /// While lines are being dropped, tries to write again even if the container is
    /// quiet, so that logging (and the status) recovers by itself.
    pub fn retry(&mut self) {
        if self.stats.dropping {
            self.flush();
        }
    }

    /// Writes whatever is left without a newline at the end of a stream. The text is
    /// complete (the stream ended), so it is an `F` record.
    pub fn finish(&mut self) {
        let ts = rfc3339_nano(jiff::Timestamp::now());
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.pending[stream as usize]);
            if !line.is_empty() {
                self.record(&ts, stream, 'F', &line);
            }
        }
        self.flush();
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
        self.out_lines += 1;
    }

    fn flush(&mut self) {
        let now = Instant::now();
        self.check_path(now);
        self.maybe_rotate(now);
        if self.out.is_empty() && !self.stats.dropping {
            return;
        }
        if self.rotation_stuck() {
            let why = format!(
                "rotating {}: {}",
                self.path.display(),
                self.rotate_error.as_deref().unwrap_or_default()
            );
            self.fail(why, now);
        }
        let waiting = self.retry_at.is_some_and(|t| now < t);
        if self.detached || self.rotation_stuck() || waiting {
            self.drop_out();
            return;
        }
        if self.stats.dropping {
            let marker = self.marker();
            if let Err((_, e)) = self.write_raw(marker.as_bytes()) {
                self.fail(format!("writing {}: {e}", self.path.display()), now);
                self.drop_out();
                return;
            }
            self.resume();
        }
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            match self.write_raw(&out) {
                Ok(()) => {
                    self.unchecked.0 += self.out_lines;
                    self.unchecked.1 += out.len() as u64;
                    self.out_lines = 0;
                }
                Err((written, e)) => {
                    let done = count_lines(&out[..written]);
                    self.unchecked.0 += done;
                    self.unchecked.1 += written as u64;
                    self.fail(format!("writing {}: {e}", self.path.display()), now);
                    self.count_dropped(self.out_lines - done, (out.len() - written) as u64);
                    self.out_lines = 0;
                }
            }
            self.out = out;
            self.out.clear();
        }
        self.maybe_rotate(now);
    }

    /// Writes all of `buf`; on failure says how much of it reached the file.
    fn write_raw(&mut self, buf: &[u8]) -> Result<(), (usize, io::Error)> {
        let mut written = 0;
        while written < buf.len() {
            match self.file.write(&buf[written..]) {
                Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    written += n;
                    self.size += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if written > 0 {
                        self.torn = buf[written - 1] != b'\n';
                    }
                    return Err((written, e));
                }
            }
        }
        self.torn = false;
        Ok(())
    }

    /// Starts an episode of dropping, or extends the one going on; the next write is
    /// tried after the retry interval.
    fn fail(&mut self, error: String, now: Instant) {
        if !self.stats.dropping {
            self.stats.dropping = true;
            self.stats.episodes += 1;
            self.stats.error = Some(error);
            self.episode = (0, 0);
        }
        self.retry_at = Some(now + self.timing.retry);
    }

    fn resume(&mut self) {
        self.stats.dropping = false;
        self.retry_at = None;
        self.episode = (0, 0);
    }

    fn drop_out(&mut self) {
        self.count_dropped(self.out_lines, self.out.len() as u64);
        self.out.clear();
        self.out_lines = 0;
    }

    fn count_dropped(&mut self, lines: u64, bytes: u64) {
        self.stats.dropped_lines += lines;
        self.stats.dropped_bytes += bytes;
        self.episode.0 += lines;
        self.episode.1 += bytes;
    }

    /// The record that ends an episode. A record torn by the failed write is ended first,
    /// so that this one starts a line of its own.
    fn marker(&self) -> String {
        format!(
            "{}{} stderr F hostlet: dropped {} lines ({} bytes) of this container's log: {}\n",
            if self.torn { "\n" } else { "" },
            rfc3339_nano(jiff::Timestamp::now()),
            self.episode.0,
            self.episode.1,
            self.stats.error.as_deref().unwrap_or("log writes failed"),
        )
    }

    /// A rotation that keeps failing (a read-only directory, say) must not let the live
    /// file grow without bound: past twice its size limit, lines are dropped instead.
    fn rotation_stuck(&self) -> bool {
        match (self.limits, &self.rotate_error) {
            (Some(l), Some(_)) => l.max_size > 0 && self.size >= l.max_size.saturating_mul(2),
            _ => false,
        }
    }

    /// Notices a log file removed (or replaced) under the writer: what went to it since
    /// the last look is counted as dropped, and a new file is opened at the path. Writing
    /// on into a removed file would fill the disk with data nobody can read.
    fn check_path(&mut self, now: Instant) {
        if now < self.check_at {
            return;
        }
        self.check_at = now + self.timing.check;
        let same = match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if same {
            self.unchecked = (0, 0);
            self.detached = false;
            return;
        }
        if !self.detached {
            let (lines, bytes) = std::mem::take(&mut self.unchecked);
            self.fail(format!("{} was removed", self.path.display()), now);
            self.count_dropped(lines, bytes);
            self.torn = false;
        }
        match open_append(&self.path).and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok((size, file)) => {
                self.file = file;
                self.size = size;
                self.detached = false;
                // Say what was lost at once, in the new file.
                self.retry_at = None;
            }
            Err(e) => {
                self.detached = true;
                self.stats.error = Some(format!("reopening {}: {e}", self.path.display()));
            }
        }
    }

    fn maybe_rotate(&mut self, now: Instant) {
        let Some(limits) = self.limits else { return };
        if limits.max_size == 0 || self.size < limits.max_size || self.detached {
            return;
        }
        if self.rotate_at.is_some_and(|t| now < t) {
            return;
        }
        match self.rotate(limits) {
            Ok(()) => {
                self.rotate_at = None;
                if self.rotate_error.take().is_some() {
                    tracing::info!(file = %self.path.display(), "log rotation works again");
                }
            }
            Err(e) => {
                if self.rotate_error.is_none() {
                    tracing::warn!(file = %self.path.display(), error = %e, "rotating container log failed; retrying every second");
                }
                self.rotate_error = Some(e.to_string());
                self.rotate_at = Some(now + self.timing.rotate_retry);
            }
        }
    }

    /// Renames the live file aside, starts a new one, compresses the old one and drops
    /// the oldest rotated files beyond the limit. Readers following the old file keep
    /// their descriptor and see a new inode at the path. When no new file can be made,
    /// the old one is put back, so the live file is never lost.
    fn rotate(&mut self, limits: LogLimits) -> io::Result<()> {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%d-%H%M%S%.6f")
            .to_string();
        let mut aside = self.path.as_os_str().to_owned();
        aside.push(format!(".{stamp}"));
        let aside = PathBuf::from(aside);
        std::fs::rename(&self.path, &aside)?;
        match open_append(&self.path) {
            Ok(file) => self.file = file,
            Err(e) => {
                let _ = std::fs::rename(&aside, &self.path);
                return Err(e);
            }
        }
        self.size = 0;
        self.unchecked = (0, 0);
        if let Err(e) = compress(&aside) {
            tracing::warn!(file = %aside.display(), error = %e, "compressing rotated log");
        }
        prune_rotated(&self.path, limits.max_files.max(1) as usize - 1);
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // No link in the last component: see `open_log`.
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn count_lines(buf: &[u8]) -> u64 {
    buf.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
