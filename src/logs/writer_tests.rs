use std::fs::File;
use std::time::{Duration, Instant};

use super::*;
use crate::logs::rotated_files;

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

/// A disk that is always full.
fn dev_full() -> File {
    OpenOptions::new().write(true).open("/dev/full").unwrap()
}

const FAR: Duration = Duration::from_secs(3600);

/// A writer whose path check never runs by itself (the tests swap its file).
fn writer(path: &Path, limits: Option<LogLimits>, retry: Duration) -> CriWriter {
    let mut w = CriWriter::open_inner(path, limits).unwrap();
    w.timing = Timing {
        retry,
        check: FAR,
        rotate_retry: FAR,
    };
    w.check_at = Instant::now() + FAR;
    w
}

#[test]
fn splits_lines_partials_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c/0.log");
    let mut w = CriWriter::open(&path).unwrap();
    w.write(Stream::Stdout, b"hel");
    w.write(Stream::Stderr, b"oops\n");
    w.write(Stream::Stdout, b"lo\nworld\n\ntail");
    w.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 3]);
    w.finish();
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
    assert_eq!(*w.stats(), DropStats::default());
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
        w.write(Stream::Stdout, line.as_bytes());
    }
    w.finish();
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
fn a_full_disk_drops_and_counts_lines_and_keeps_no_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c/0.log");
    let mut w = writer(&path, None, Duration::ZERO);
    w.write(Stream::Stdout, b"before\n");
    let real = std::mem::replace(&mut w.file, dev_full());
    let chunk = "flooding-the-log-disk\n".repeat(1000);
    for _ in 0..200 {
        w.write(Stream::Stdout, chunk.as_bytes());
    }
    let s = w.stats().clone();
    assert!(s.dropping);
    assert_eq!(s.episodes, 1);
    assert_eq!(s.dropped_lines, 200_000);
    assert!(s.dropped_bytes > 200_000 * 22, "{s:?}");
    assert!(
        s.error
            .as_deref()
            .unwrap()
            .contains("No space left on device"),
        "{s:?}"
    );
    // Nothing is queued: the buffer holds at most one write's records.
    assert!(w.out.is_empty());
    assert!(w.out.capacity() < 2 * 58 * 1000, "{}", w.out.capacity());

    // Space returns: one record says what was lost, then logging goes on.
    w.file = real;
    w.write(Stream::Stdout, b"after\n");
    let got = lines(&path);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].2, "before");
    assert_eq!((got[1].0.as_str(), got[1].1.as_str()), ("stderr", "F"));
    assert!(
        got[1].2.starts_with(&format!(
            "hostlet: dropped 200000 lines ({} bytes)",
            s.dropped_bytes
        )),
        "{got:?}"
    );
    assert!(got[1].2.contains("No space left on device"), "{got:?}");
    assert_eq!(got[2].2, "after");
    let s = w.stats();
    assert!(!s.dropping);
    assert_eq!((s.episodes, s.dropped_lines), (1, 200_000));
}

#[test]
fn while_dropping_writes_are_tried_only_at_the_retry_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c/0.log");
    let mut w = writer(&path, None, FAR);
    let real = std::mem::replace(&mut w.file, dev_full());
    w.write(Stream::Stdout, b"lost\n");
    w.file = real;
    // The disk has room again, but the next try is an hour away: still dropped.
    w.write(Stream::Stderr, b"also lost\n");
    w.retry();
    assert_eq!(w.stats().dropped_lines, 2);
    assert!(std::fs::read_to_string(&path).unwrap().is_empty());
    // The retry time comes even though the container is quiet.
    w.retry_at = Some(Instant::now());
    w.retry();
    let got = lines(&path);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].2.starts_with("hostlet: dropped 2 lines"), "{got:?}");
    assert!(!w.stats().dropping);
}

#[test]
fn a_removed_log_file_is_reopened_and_what_went_to_it_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c/0.log");
    let mut w = writer(&path, None, Duration::ZERO);
    w.timing.check = Duration::ZERO;
    w.check_at = Instant::now();
    w.write(Stream::Stdout, b"one\n");
    w.write(Stream::Stdout, b"two\nthree\n");
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    w.write(Stream::Stdout, b"four\n");
    let got = lines(&path);
    assert_eq!(got.len(), 2, "{got:?}");
    // Checked before "two" and "three" were written; they went to the removed file.
    assert!(
        got[0].2.starts_with("hostlet: dropped 2 lines") && got[0].2.contains("was removed"),
        "{got:?}"
    );
    assert_eq!(got[1].2, "four");
    assert_eq!(w.stats().dropped_lines, 2);
    assert!(!w.stats().dropping);
}

#[test]
fn a_stuck_rotation_bounds_the_live_file_and_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c/0.log");
    let limits = LogLimits {
        max_size: 1000,
        max_files: 2,
    };
    let mut w = writer(&path, Some(limits), Duration::ZERO);
    // As after a rename refused by a read-only directory.
    w.rotate_error = Some("Read-only file system (os error 30)".into());
    w.rotate_at = Some(Instant::now() + FAR);
    let line = format!("{}\n", "z".repeat(60));
    for _ in 0..100 {
        w.write(Stream::Stdout, line.as_bytes());
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!((2000..2200).contains(&size), "{size}");
    assert!(w.stats().dropping);
    assert!(w.stats().dropped_lines > 60, "{:?}", w.stats());
    assert!(w.stats().error.as_deref().unwrap().contains("Read-only"));
    // The directory is writable again: the rotation goes through and logging resumes.
    w.rotate_at = Some(Instant::now());
    w.write(Stream::Stdout, b"back\n");
    let got = lines(&path);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].2.starts_with("hostlet: dropped"), "{got:?}");
    assert_eq!(got[1].2, "back");
    assert_eq!(rotated_files(&path).len(), 1);
}

#[test]
fn a_torn_record_is_ended_before_the_drop_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c/0.log");
    let mut w = writer(&path, None, Duration::ZERO);
    std::fs::write(&path, b"2026-01-01T00:00:00.000000000Z stdout F half a li").unwrap();
    w.torn = true;
    w.fail("writing: No space left on device".into(), Instant::now());
    w.count_dropped(1, 30);
    w.retry();
    let got = lines(&path);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].2, "half a li");
    assert!(got[1].2.starts_with("hostlet: dropped 1 lines (30 bytes)"));
}
