//! On-disk layout under `--root-dir` and atomic writes of the small records that let a
//! restarted agent adopt what an earlier one started.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid record: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where things live under `--root-dir`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }
    /// libcontainer's own state root.
    pub fn runtime(&self) -> PathBuf {
        self.root.join("runtime")
    }
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    pub fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }
    pub fn pod(&self, uid: &str) -> PathBuf {
        self.pods().join(uid)
    }
}

/// Writes `value` as JSON to `path` so that readers see either the old or the new
/// content, never a torn one (temp file + rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec(value).map_err(|source| StateError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

/// No fsync, as runc and conmon do with their state: these records describe processes
/// and mounts, which a power cut ends too, and an agent that crashed finds the page
/// cache intact. Four fsyncs were on the path of every container start (BENCHMARKS.md
/// row 1). After a power cut a record may be torn; readers treat it as debris.
/// (The image store, which outlives reboots, syncs its writes: `image::store`.)
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// Reads a JSON record; `Ok(None)` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Decode {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

pub fn create_dir_all(path: &Path) -> Result<(), StateError> {
    fs::create_dir_all(path).map_err(io(path))
}

/// Removes a directory tree; a missing one is not an error.
pub fn remove_dir_all(path: &Path) -> Result<(), StateError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        assert_eq!(read_json::<Vec<u32>>(&p).unwrap(), None);
        write_json(&p, &vec![1u32, 2]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&p).unwrap(), Some(vec![1, 2]));
        assert!(!p.with_extension("tmp").exists());
        fs::write(&p, b"{").unwrap();
        let err = read_json::<Vec<u32>>(&p).unwrap_err().to_string();
        assert!(err.contains("x.json"), "{err}");
    }
}
