//! What an earlier agent left, by pod UID: its containers (adopted monitors and exit
//! records) and the pod directories that have none (a pod stopped while backing off, or
//! between two containers, still owns a directory, namespaces and a cgroup). Gathered
//! once at start; the manager hands each pod's share to the worker that takes it over,
//! and what no source declares any more to a worker that stops it.

use std::collections::HashMap;
use std::path::Path;

use super::monitors::Adopted;

#[derive(Debug, Default)]
pub struct Leftovers {
    by_pod: HashMap<String, Vec<Adopted>>,
}

impl Leftovers {
    /// Groups `adopted` by pod and adds every directory under `pods_dir` as a pod with
    /// no container left.
    pub fn new(adopted: Vec<Adopted>, pods_dir: &Path) -> Self {
        let mut by_pod: HashMap<String, Vec<Adopted>> = HashMap::new();
        for a in adopted {
            by_pod.entry(a.config.pod_uid.clone()).or_default().push(a);
        }
        for uid in pod_dirs(pods_dir) {
            by_pod.entry(uid).or_default();
        }
        Self { by_pod }
    }

    /// The containers a pod left; none for a pod new to this node.
    pub fn take(&mut self, pod_uid: &str) -> Vec<Adopted> {
        self.by_pod.remove(pod_uid).unwrap_or_default()
    }

    /// The pods not taken, with what each left.
    pub fn into_pods(self) -> impl Iterator<Item = (String, Vec<Adopted>)> {
        self.by_pod.into_iter()
    }
}

fn pod_dirs(pods_dir: &Path) -> Vec<String> {
    std::fs::read_dir(pods_dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_dirs_without_containers_are_leftovers_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("uid-a")).unwrap();
        std::fs::write(dir.path().join("not-a-pod"), "").unwrap();
        let mut left = Leftovers::new(Vec::new(), dir.path());
        assert!(left.take("uid-b").is_empty());
        let pods: Vec<_> = left.into_pods().map(|(uid, c)| (uid, c.len())).collect();
        assert_eq!(pods, [("uid-a".to_string(), 0)]);
    }

    #[test]
    fn a_missing_pods_dir_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let left = Leftovers::new(Vec::new(), &dir.path().join("absent"));
        assert_eq!(left.into_pods().count(), 0);
    }
}
