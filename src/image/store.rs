//! On-disk content: the content-addressed blob store (`blobs/sha256/<hex>`, verified while written)
//! and the database of references and image records (`db.json`, replaced atomically under a
//! file lock, so the agent and CLI commands can update it side by side).
//!
//! Everything here is blocking; async callers go through `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ImageError;

/// Prefix of every temporary file or directory this module creates; removed at start-up.
pub const TMP_PREFIX: &str = ".tmp-";

pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A name for a temporary sibling that no other writer in this process or another uses.
pub fn tmp_name(stem: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{TMP_PREFIX}{stem}-{}-{n}", std::process::id())
}

/// Returns the hex part of a `sha256:<64 hex>` digest, or None if it is not one.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// fsync a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let dir = path.parent().expect("atomic write target has a parent");
    let tmp = dir.join(tmp_name("write"));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes leftovers of interrupted writes (`.tmp-*`) directly inside `dir`.
pub fn remove_stale_tmp(dir: &Path) -> Result<(), ImageError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let r = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            if let Err(e) = r {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove stale temporary");
            }
        }
    }
    Ok(())
}

/// `<root>/blobs/sha256`: blobs named by the sha256 of their content.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    pub fn open(dir: PathBuf) -> Result<Self, ImageError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        remove_stale_tmp(&dir)?;
        Ok(Self { dir })
    }

    /// Path of the blob `digest` (`sha256:<hex>`); None for anything that is not a sha256 digest,
    /// so a digest from a registry can never name a path outside the store.
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        sha256_hex(digest).map(|hex| self.dir.join(hex))
    }

    /// Whether the blob is present. Blobs only ever appear under their name after verification.
    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_some_and(|p| p.is_file())
    }

    /// Starts writing a blob expected to hash to `digest`.
    pub fn writer(&self, digest: &str) -> Result<BlobWriter, ImageError> {
        BlobWriter::new(&self.dir, Some(digest))
    }

    /// Starts writing a blob stored under whatever digest its content has (imports).
    pub fn writer_any(&self) -> Result<BlobWriter, ImageError> {
        BlobWriter::new(&self.dir, None)
    }

    /// Removes a blob (absent is fine).
    pub fn remove(&self, digest: &str) -> Result<(), ImageError> {
        let Some(path) = self.path(digest) else {
            return Ok(());
        };
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Stores a small in-memory blob (manifest, config) after checking its digest.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, ImageError> {
        if let Some(p) = self.path(digest).filter(|p| p.is_file()) {
            return Ok(p);
        }
        let mut w = self.writer(digest)?;
        w.write_all(bytes).map_err(io_err(&w.tmp))?;
        w.finish()
    }
}

fn bad_digest(digest: &str) -> ImageError {
    ImageError::Digest {
        expected: digest.to_string(),
        actual: "not a sha256 digest".into(),
    }
}

/// Writes a blob to a temporary file in the blob directory while hashing it; `finish` checks the
/// digest, fsyncs and renames it into place. Dropped unfinished (or failing), the temp is removed.
pub struct BlobWriter {
    dir: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    /// None: keep whatever digest the content has.
    expected: Option<String>,
    bytes: u64,
}

impl BlobWriter {
    pub fn new(dir: &Path, expected: Option<&str>) -> Result<Self, ImageError> {
        if let Some(expected) = expected {
            sha256_hex(expected).ok_or_else(|| bad_digest(expected))?;
        }
        let tmp = dir.join(tmp_name("blob"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            tmp,
            file: Some(file),
            hasher: Sha256::new(),
            expected: expected.map(str::to_string),
            bytes: 0,
        })
    }

    /// The temporary file being written (named in write errors: a full disk says where).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Verifies the digest, fsyncs, renames into place; returns the blob's path.
    pub fn finish(self) -> Result<PathBuf, ImageError> {
        self.finish_digest().map(|(path, _, _)| path)
    }

    /// Like `finish`, also returning the digest and whether the blob was not there before.
    pub fn finish_digest(mut self) -> Result<(PathBuf, String, bool), ImageError> {
        let file = self.file.take().expect("finish called once");
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if let Some(expected) = &self.expected {
            if &actual != expected {
                // Drop removes the temp file.
                return Err(ImageError::Digest {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let dest = self.dir.join(sha256_hex(&actual).expect("formatted above"));
        if dest.is_file() {
            return Ok((dest, actual, false)); // same content already stored; Drop removes ours
        }
        file.sync_all().map_err(io_err(&self.tmp))?;
        drop(file);
        fs::rename(&self.tmp, &dest).map_err(io_err(&dest))?;
        self.tmp = PathBuf::new(); // renamed: nothing left to clean up
        sync_dir(&self.dir)?;
        Ok((dest, actual, true))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.as_mut().expect("not finished").write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("not finished").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// What the store knows besides content: references and per-image records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Db {
    /// Normalised reference → image manifest digest.
    #[serde(default)]
    pub refs: BTreeMap<String, String>,
    /// Image manifest digest → record.
    #[serde(default)]
    pub images: BTreeMap<String, ImageRecord>,
    /// Preload archives already imported: file name → `<size>:<mtime>`.
    #[serde(default)]
    pub preloaded: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Unix seconds the image was first stored.
    pub added: i64,
    /// Unix seconds `ensure` last returned it (a container was about to use it).
    pub last_used: i64,
    /// Bytes of the manifest, config and layer blobs as the manifest declares them.
    pub size: u64,
    /// Other blobs kept for this image (the image index it was resolved from).
    #[serde(default)]
    pub extra: Vec<String>,
    /// How the signature policy accepted it when it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    /// Which registry source served its last pull (`mirror <location>`, `primary <location>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
}

impl Db {
    /// References naming `digest`, sorted.
    pub fn refs_to(&self, digest: &str) -> Vec<String> {
        self.refs
            .iter()
            .filter(|(_, d)| d.as_str() == digest)
            .map(|(r, _)| r.clone())
            .collect()
    }
}

/// `db.json` beside `lock`: readers see whole versions (atomic replace); writers serialise
/// through an exclusive `flock` on the lock file, so two processes never lose an update.
#[derive(Debug, Clone)]
pub struct DbFile {
    path: PathBuf,
    lock: PathBuf,
}

impl DbFile {
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        let db = Self {
            path: dir.join("db.json"),
            lock: dir.join("lock"),
        };
        db.read()?;
        Ok(db)
    }

    pub fn read(&self) -> Result<Db, ImageError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Io {
                path: self.path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Db::default()),
            Err(e) => Err(io_err(&self.path)(e)),
        }
    }

    /// Runs `f` on the current content under the lock; writes the result back if it changed.
    pub fn update<T>(&self, f: impl FnOnce(&mut Db) -> T) -> Result<T, ImageError> {
        let _lock = self.lock()?;
        let before = self.read()?;
        let mut db = before.clone();
        let out = f(&mut db);
        if db != before {
            let bytes = serde_json::to_vec_pretty(&db).expect("db serialises");
            write_atomic(&self.path, &bytes)?;
        }
        Ok(out)
    }

    /// The store-wide exclusive lock (also held while removing content).
    pub fn lock(&self) -> Result<FileLock, ImageError> {
        use std::os::fd::AsRawFd;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(io_err(&self.lock))?;
        loop {
            // SAFETY: flock on a descriptor we own; released when `file` is closed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(FileLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_err(&self.lock)(e));
            }
        }
    }
}

/// Held store lock; released on drop.
pub struct FileLock {
    _file: File,
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn blob_writer_verifies_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(tmp.path().join("sha256")).unwrap();
        let good = digest_of(b"hello");
        let mut w = blobs.writer(&good).unwrap();
        w.write_all(b"hel").unwrap();
        w.write_all(b"lo").unwrap();
        let path = w.finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert!(blobs.contains(&good));
        assert_eq!(
            names(&tmp.path().join("sha256")),
            vec![sha256_hex(&good).unwrap().to_string()]
        );
    }

    #[test]
    fn blob_writer_wrong_digest_fails_and_removes_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sha256");
        let blobs = Blobs::open(dir.clone()).unwrap();
        let claimed = digest_of(b"what the manifest says");
        let mut w = blobs.writer(&claimed).unwrap();
        w.write_all(b"what the registry sent").unwrap();
        match w.finish() {
            Err(ImageError::Digest { expected, actual }) => {
                assert_eq!(expected, claimed);
                assert_eq!(actual, digest_of(b"what the registry sent"));
            }
            other => panic!("expected digest error, got {other:?}"),
        }
        assert!(
            names(&dir).is_empty(),
            "temp left behind: {:?}",
            names(&dir)
        );
        assert!(!blobs.contains(&claimed));

        // Abandoned writers clean up too.
        let w = blobs.writer(&claimed).unwrap();
        drop(w);
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn digests_that_are_not_sha256_hex_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(tmp.path().join("sha256")).unwrap();
        for d in [
            "sha256:../../etc/passwd",
            "sha512:00",
            "sha256:ABC",
            &format!("sha256:{}", "G".repeat(64)),
        ] {
            assert!(blobs.path(d).is_none(), "{d}");
            assert!(blobs.writer(d).is_err(), "{d}");
        }
    }

    #[test]
    fn stale_temps_removed_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sha256");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".tmp-blob-1-0"), b"partial").unwrap();
        Blobs::open(dir.clone()).unwrap();
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn db_round_trip_and_any_digest_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let db = DbFile::open(tmp.path()).unwrap();
        assert_eq!(db.read().unwrap(), Db::default());
        db.update(|d| {
            d.refs.insert(
                "docker.io/library/busybox:latest".into(),
                "sha256:aa".into(),
            )
        })
        .unwrap();
        let again = DbFile::open(tmp.path()).unwrap().read().unwrap();
        assert_eq!(
            again.refs_to("sha256:aa"),
            vec!["docker.io/library/busybox:latest"]
        );
        let mut names = names(tmp.path());
        names.sort();
        assert_eq!(names, vec!["db.json", "lock"]);

        let blobs = Blobs::open(tmp.path().join("sha256")).unwrap();
        let mut w = blobs.writer_any().unwrap();
        w.write_all(b"imported").unwrap();
        let (_, digest, new) = w.finish_digest().unwrap();
        assert_eq!(digest, digest_of(b"imported"));
        assert!(new && blobs.contains(&digest));
        let mut w = blobs.writer_any().unwrap();
        w.write_all(b"imported").unwrap();
        assert!(!w.finish_digest().unwrap().2);
        assert_eq!(names_len(&tmp.path().join("sha256")), 1);
    }

    fn names_len(dir: &Path) -> usize {
        names(dir).len()
    }
}
