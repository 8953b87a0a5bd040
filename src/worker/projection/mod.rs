//! configMap, secret and projected volumes: their files computed from the pod and the
//! ConfigMaps and Secrets of its namespace (the kubelet's pkg/volume/configmap, secret and
//! projected), and written the kubelet's AtomicWriter way: a timestamped directory and a
//! `..data` symlink swapped with a rename, so a reader never sees half an update.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};

use crate::manifest::{ObjectKind, ObjectSet};
use crate::node::NodeInfo;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a volume: its bytes and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileData {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A volume's files by relative path.
pub type Payload = BTreeMap<String, FileData>;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The kubelet's messages: `configmap "ns/name" not found`, `couldn't find key ...`.
    #[error("{0}")]
    Missing(String),
    #[error("item path {0:?} must be relative without '..'")]
    ItemPath(String),
    #[error("unsupported field path {0:?}")]
    FieldPath(String),
    #[error("{0}")]
    Resource(#[from] crate::bundle::ResourceFieldError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether `v` is written from ConfigMaps, Secrets (or the downward API, when projected).
pub fn is_projection(v: &Volume) -> bool {
    v.config_map.is_some() || v.secret.is_some() || v.projected.is_some()
}

/// Whether `v` holds secret data and so lives on tmpfs (projected volumes always do, as
/// the kubelet's).
pub fn on_tmpfs(v: &Volume) -> bool {
    v.secret.is_some() || v.projected.is_some()
}

/// The files of volume `v` of `pod` from `objects` now.
pub fn payload(
    pod: &Pod,
    v: &Volume,
    objects: &ObjectSet,
    node: &NodeInfo,
) -> Result<Payload, ProjectionError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = Payload::new();
    if let Some(cm) = &v.config_map {
        let mode = cm.default_mode.unwrap_or(0o644) as u32 & 0o777;
        let src = Source::new(
            ObjectKind::ConfigMap,
            &cm.name,
            cm.items.as_deref(),
            cm.optional,
        );
        src.add(ns, objects, mode, &mut out)?;
    } else if let Some(s) = &v.secret {
        let mode = s.default_mode.unwrap_or(0o644) as u32 & 0o777;
        let name = s.secret_name.as_deref().unwrap_or_default();
        let src = Source::new(ObjectKind::Secret, name, s.items.as_deref(), s.optional);
        src.add(ns, objects, mode, &mut out)?;
    } else if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644) as u32 & 0o777;
        for s in p.sources.iter().flatten() {
            if let Some(cm) = &s.config_map {
                let src = Source::new(
                    ObjectKind::ConfigMap,
                    &cm.name,
                    cm.items.as_deref(),
                    cm.optional,
                );
                src.add(ns, objects, mode, &mut out)?;
            }
            if let Some(sec) = &s.secret {
                let src = Source::new(
                    ObjectKind::Secret,
                    &sec.name,
                    sec.items.as_deref(),
                    sec.optional,
                );
                src.add(ns, objects, mode, &mut out)?;
            }
            for item in s.downward_api.iter().flat_map(|d| d.items.iter().flatten()) {
                let data = match (&item.field_ref, &item.resource_field_ref) {
                    (Some(f), _) => crate::bundle::downward_field(pod, &f.field_path, node)
                        .ok_or_else(|| ProjectionError::FieldPath(f.field_path.clone()))?,
                    (None, Some(r)) => crate::bundle::downward_resource(pod, r, node)?,
                    (None, None) => return Err(ProjectionError::FieldPath(String::new())),
                };
                let path = checked_path(&item.path)?;
                let mode = item.mode.map_or(mode, |m| m as u32 & 0o777);
                out.insert(
                    path,
                    FileData {
                        data: data.into_bytes(),
                        mode,
                    },
                );
            }
        }
    }
    Ok(out)
}

struct Source<'a> {
    kind: ObjectKind,
    name: &'a str,
    items: Option<&'a [KeyToPath]>,
    optional: bool,
}

impl<'a> Source<'a> {
    fn new(
        kind: ObjectKind,
        name: &'a str,
        items: Option<&'a [KeyToPath]>,
        optional: Option<bool>,
    ) -> Self {
        Self {
            kind,
            name,
            items,
            optional: optional.unwrap_or(false),
        }
    }

    fn add(
        &self,
        ns: &str,
        objects: &ObjectSet,
        default_mode: u32,
        out: &mut Payload,
    ) -> Result<(), ProjectionError> {
        let Some(obj) = objects.get(self.kind, ns, self.name) else {
            if self.optional {
                return Ok(());
            }
            return Err(ProjectionError::Missing(format!(
                "{} \"{ns}/{}\" not found",
                self.kind.resource(),
                self.name
            )));
        };
        match self.items.filter(|i| !i.is_empty()) {
            None => {
                for (k, v) in &obj.data {
                    let file = FileData {
                        data: v.clone(),
                        mode: default_mode,
                    };
                    out.insert(k.clone(), file);
                }
            }
            Some(items) => {
                for item in items {
                    let Some(v) = obj.data.get(&item.key) else {
                        if self.optional {
                            continue;
                        }
                        return Err(ProjectionError::Missing(format!(
                            "couldn't find key {} in {} {ns}/{}",
                            item.key,
                            self.kind.as_str(),
                            self.name
                        )));
                    };
                    let mode = item.mode.map_or(default_mode, |m| m as u32 & 0o777);
                    let file = FileData {
                        data: v.clone(),
                        mode,
                    };
                    out.insert(checked_path(&item.path)?, file);
                }
            }
        }
        Ok(())
    }
}

fn checked_path(p: &str) -> Result<String, ProjectionError> {
    let path = Path::new(p);
    let bad = p.is_empty()
        || p.starts_with("..")
        || path.is_absolute()
        || path.components().any(|c| matches!(c, Component::ParentDir));
    if bad {
        return Err(ProjectionError::ItemPath(p.to_string()));
    }
    Ok(p.to_string())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProjectionError + '_ {
    move |source| ProjectionError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `dir` holds now (through `..data`), to skip writing an unchanged payload.
fn current(dir: &Path) -> Option<(PathBuf, Payload)> {
    let target = std::fs::read_link(dir.join(DATA)).ok()?;
    let ts = dir.join(&target);
    let mut out = Payload::new();
    fn walk(base: &Path, rel: &Path, out: &mut Payload) -> Option<()> {
        for e in std::fs::read_dir(base.join(rel)).ok()? {
            let e = e.ok()?;
            let rel = rel.join(e.file_name());
            let meta = e.metadata().ok()?;
            if meta.is_dir() {
                walk(base, &rel, out)?;
            } else {
                let data = std::fs::read(base.join(&rel)).ok()?;
                let mode = meta.permissions().mode() & 0o7777;
                out.insert(rel.to_string_lossy().into_owned(), FileData { data, mode });
            }
        }
        Some(())
    }
    walk(&ts, Path::new(""), &mut out)?;
    Some((ts, out))
}

/// Writes `payload` into `dir` atomically; true when something changed. Files are owned by
/// root, with `fs_group` as their group and group read added, as the kubelet's
/// SetVolumeOwnership does.
pub fn write_atomic(
    dir: &Path,
    payload: &Payload,
    fs_group: Option<i64>,
) -> Result<bool, ProjectionError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut payload = payload.clone();
    if fs_group.is_some() {
        for f in payload.values_mut() {
            f.mode |= 0o440;
        }
    }
    let old = current(dir);
    if old.as_ref().is_some_and(|(_, p)| *p == payload) {
        return Ok(false);
    }
    let stamp = jiff::Timestamp::now()
        .strftime("%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let ts_name = format!("..{stamp}");
    let ts = dir.join(&ts_name);
    std::fs::create_dir(&ts).map_err(io(&ts))?;
    std::fs::set_permissions(&ts, std::fs::Permissions::from_mode(0o755)).map_err(io(&ts))?;
    let gid = fs_group.map(|g| g as u32);
    for (rel, f) in &payload {
        let target = ts.join(rel);
        if let Some(parent) = target.parent().filter(|p| *p != ts) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&target, &f.data).map_err(io(&target))?;
        if gid.is_some() {
            std::os::unix::fs::chown(&target, None, gid).map_err(io(&target))?;
        }
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(f.mode))
            .map_err(io(&target))?;
    }
    // The swap: a new symlink renamed over `..data` (rename(2) is atomic).
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts_name, &tmp).map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join(DATA)).map_err(io(dir))?;
    // Top-level names point through `..data`, so they follow every swap.
    let mut top: Vec<String> = payload
        .keys()
        .filter_map(|k| k.split('/').next().map(str::to_string))
        .collect();
    top.dedup();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA).join(name), &link).map_err(io(&link))?;
        }
    }
    for e in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some((old_ts, _)) = old {
        let _ = std::fs::remove_dir_all(old_ts);
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
