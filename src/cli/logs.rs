//! `hostlet logs`: a container's CRI log file, printed as the container wrote it, like
//! `kubectl logs`; `-f` follows it across rotations until the container exits.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use super::operator::{self, find_container, find_pod, runtime_id, RootArgs};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Keep printing what the container writes, until it exits
    #[arg(short, long)]
    pub follow: bool,
    /// The previous (dead) instance of the container
    #[arg(short, long)]
    pub previous: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Prefix each line with the time it was written (RFC 3339)
    #[arg(long)]
    pub timestamps: bool,
    /// Only lines newer than this (5s, 2m, 1h)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub since: Option<Duration>,
    /// Namespace of the pod
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// The container (default: the pod's first container)
    #[arg(short, long = "container", value_name = "CONTAINER")]
    pub container_flag: Option<String>,
    /// The pod: NAME, NAMESPACE/NAME, or the manifest's name without -NODE
    pub pod: String,
    /// The container (same as -c)
    pub container: Option<String>,
}

fn duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s).map_err(|e| e.to_string())
}

/// One CRI record: time, stream, partial flag, text.
struct Record<'a> {
    ts: &'a str,
    partial: bool,
    text: &'a [u8],
}

fn parse(line: &[u8]) -> Option<Record<'_>> {
    let mut it = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(it.next()?).ok()?;
    let _stream = it.next()?;
    let tag = it.next()?;
    let text = it.next().unwrap_or(b"");
    Some(Record {
        ts,
        partial: tag == b"P",
        text,
    })
}

/// Turns CRI records into the container's own output, honouring `--timestamps` and
/// `--since`; partial records join the next one into one line.
struct Printer {
    timestamps: bool,
    since: Option<jiff::Timestamp>,
    /// Inside a line made of partial records (its timestamp was printed already).
    mid_line: bool,
}

impl Printer {
    fn render(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let Some(r) = parse(line) else { return };
        if let Some(since) = self.since {
            if r.ts.parse::<jiff::Timestamp>().is_ok_and(|t| t < since) {
                return;
            }
        }
        if self.timestamps && !self.mid_line {
            out.extend_from_slice(r.ts.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(r.text);
        if !r.partial {
            out.push(b'\n');
        }
        self.mid_line = r.partial;
    }
}

/// The log files of the container: its live file and, for `--previous`, the one before.
fn log_path(args: &LogsArgs) -> anyhow::Result<(PathBuf, Option<String>)> {
    let pod = find_pod(args.root.pods()?, &args.pod, args.namespace.as_deref())?;
    let wanted = args.container_flag.as_deref().or(args.container.as_deref());
    let c = find_container(&pod, wanted)?;
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    // The container's record names its log; a container that never started has none.
    let cfg = runtime_id(&c)
        .and_then(|id| args.root.monitor_config(id))
        .or_else(|| find_config(&args.root, &pod_uid, &c.name));
    let Some(cfg) = cfg else {
        bail!(
            "container {:?} in pod {:?} has not started yet: no log",
            c.name,
            operator::name(&pod)
        );
    };
    let running = c.state.as_ref().is_some_and(|s| s.running.is_some());
    if args.previous {
        let Some(n) = cfg.restart_count.checked_sub(1) else {
            bail!(
                "previous terminated container {:?} in pod {:?} not found",
                c.name,
                operator::name(&pod)
            );
        };
        let path = cfg.log_path.with_file_name(format!("{n}.log"));
        return Ok((path, None));
    }
    Ok((cfg.log_path, running.then_some(cfg.id)))
}

/// Any record of this pod's container under the root dir, newest instance first.
fn find_config(
    root: &RootArgs,
    pod_uid: &str,
    container: &str,
) -> Option<crate::runtime::MonitorConfig> {
    let dir = crate::state::Layout::new(&root.root_dir).containers();
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| root.monitor_config(&e.file_name().to_string_lossy()))
        .filter(|c| c.pod_uid == pod_uid && c.container == container)
        .max_by_key(|c| c.restart_count)
}

pub fn main(args: LogsArgs) -> anyhow::Result<()> {
    let (path, running_id) = log_path(&args)?;
    let since = args
        .since
        .map(|d| jiff::Timestamp::now() - jiff::SignedDuration::try_from(d).unwrap_or_default());
    let mut printer = Printer {
        timestamps: args.timestamps,
        since,
        mid_line: false,
    };
    let file =
        crate::logs::open_log(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut stdout = std::io::stdout().lock();
    let mut out = Vec::new();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || !line.ends_with(b"\n") {
            break;
        }
        lines.push(std::mem::take(&mut line));
    }
    // What was read without its newline belongs to the following loop.
    let partial_tail = std::mem::take(&mut line);
    let start = match args.tail {
        Some(n) => tail_start(&lines, n),
        None => 0,
    };
    for l in &lines[start..] {
        printer.render(l, &mut out);
    }
    write_out(&mut stdout, &mut out)?;
    if !args.follow {
        return Ok(());
    }
    let Some(id) = running_id else { return Ok(()) };
    follow(
        &args.root,
        &id,
        &path,
        reader,
        partial_tail,
        &mut printer,
        &mut stdout,
    )
}

fn write_out(w: &mut impl Write, out: &mut Vec<u8>) -> anyhow::Result<()> {
    match w.write_all(out).and_then(|_| w.flush()) {
        // `hostlet logs … | head` closing the pipe is a normal end.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => r?,
    }
    out.clear();
    Ok(())
}

/// Index of the first record of the last `n` lines (a line may span partial records).
fn tail_start(lines: &[Vec<u8>], n: usize) -> usize {
    if n == 0 {
        return lines.len();
    }
    let mut complete = 0;
    for i in (0..lines.len()).rev() {
        let is_full =
            parse(lines[i].strip_suffix(b"\n").unwrap_or(&lines[i])).is_some_and(|r| !r.partial);
        if is_full {
            if complete == n {
                return i + 1;
            }
            complete += 1;
        }
    }
    0
}

/// Polls the file for new records; when the path gets a new inode (rotation), finishes
/// the old file and continues in the new one; stops once the container has exited.
fn follow(
    root: &RootArgs,
    id: &str,
    path: &Path,
    mut reader: BufReader<File>,
    mut pending: Vec<u8>,
    printer: &mut Printer,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let dir = root.container_dir(id);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut exited_seen = false;
    loop {
        let n = reader.read(&mut chunk)?;
        if n > 0 {
            pending.extend_from_slice(&chunk[..n]);
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let rest = pending.split_off(nl + 1);
                printer.render(&pending, &mut out);
                pending = rest;
            }
            write_out(stdout, &mut out)?;
            continue;
        }
        let rotated = match std::fs::metadata(path) {
            Ok(m) => m.ino() != reader.get_ref().metadata()?.ino(),
            Err(_) => false,
        };
        if rotated {
            // The old file is complete: the writer renames it only after its last write.
            let file = crate::logs::open_log(path)
                .with_context(|| format!("opening {}", path.display()))?;
            reader = BufReader::new(file);
            reader.seek(SeekFrom::Start(0))?;
            continue;
        }
        if exited_seen {
            return Ok(());
        }
        // One more read after the exit is seen: the monitor drains output before exit.json.
        exited_seen = dir.join("exit.json").exists() || !dir.exists();
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_all(lines: &[&str], timestamps: bool) -> String {
        let mut p = Printer {
            timestamps,
            since: None,
            mid_line: false,
        };
        let mut out = Vec::new();
        for l in lines {
            p.render(format!("{l}\n").as_bytes(), &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn joins_partials_and_prefixes_timestamps() {
        let lines = [
            "2024-01-01T00:00:00.000000001Z stdout P hel",
            "2024-01-01T00:00:00.000000002Z stdout F lo",
            "2024-01-01T00:00:01.000000000Z stderr F oops",
            "2024-01-01T00:00:02.000000000Z stdout F ",
        ];
        assert_eq!(render_all(&lines, false), "hello\noops\n\n");
        assert_eq!(
            render_all(&lines, true),
            "2024-01-01T00:00:00.000000001Z hello\n2024-01-01T00:00:01.000000000Z oops\n2024-01-01T00:00:02.000000000Z \n"
        );
    }

    #[test]
    fn tail_counts_logical_lines() {
        let lines: Vec<Vec<u8>> = [
            "t stdout F a",
            "t stdout P b",
            "t stdout F c",
            "t stdout F d",
        ]
        .iter()
        .map(|l| format!("{l}\n").into_bytes())
        .collect();
        assert_eq!(tail_start(&lines, 1), 3);
        assert_eq!(tail_start(&lines, 2), 1);
        assert_eq!(tail_start(&lines, 3), 0);
        assert_eq!(tail_start(&lines, 10), 0);
        assert_eq!(tail_start(&lines, 0), 4);
    }
}
