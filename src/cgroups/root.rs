//! `--cgroup-root`: the cgroup every pod cgroup of this agent lives under, as the kubelet's
//! `cgroupRoot`. `kubepods` is made inside it; the agent's orphan sweep ([`super::orphans`])
//! only ever looks under it, so agents sharing a host (tests, benchmarks) each give their
//! own and never remove each other's pod cgroups.

use super::{CgroupError, KUBEPODS};

/// The parts of the root's name: `/` is none, `/a/b` (cgroupfs) or `/a.slice/a-b.slice`
/// (systemd) is `["a", "b"]`, as the kubelet's `CgroupName`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupRoot {
    parts: Vec<String>,
}

impl CgroupRoot {
    /// Reads a `--cgroup-root` value in either form: a path of directories, or the
    /// systemd form whose last component is a slice (`/a.slice/a-b.slice`).
    pub fn parse(input: &str) -> Result<Self, CgroupError> {
        let bad = |why: &str| CgroupError::Root {
            input: input.to_string(),
            reason: why.to_string(),
        };
        if !input.starts_with('/') {
            return Err(bad(
                "expected an absolute cgroup path such as / or /hostlet",
            ));
        }
        let last = input.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let parts: Vec<String> = match last.strip_suffix(".slice") {
            Some(stem) => stem.split('-').map(str::to_string).collect(),
            None => input
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        };
        for p in &parts {
            let ok_chars = p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
            if p.is_empty() || p == "." || p == ".." || !ok_chars {
                return Err(bad(
                    "each part must be letters, digits, '_' or '.' (and not . or ..)",
                ));
            }
            if p.ends_with(".slice") || p == KUBEPODS {
                return Err(bad("a part may not be a slice name or kubepods"));
            }
        }
        Ok(Self { parts })
    }

    pub fn is_default(&self) -> bool {
        self.parts.is_empty()
    }

    /// The root's own cgroups, outermost first (`/a`, `/a/b`); none for `/`.
    pub fn levels(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut path = String::new();
        for p in &self.parts {
            path = format!("{path}/{p}");
            out.push(path.clone());
        }
        out
    }

    /// `kubepods` under the root (cgroupfs): `/kubepods`, `/a/b/kubepods`.
    pub fn kubepods(&self) -> String {
        format!("{}/{KUBEPODS}", self.levels().pop().unwrap_or_default())
    }

    /// The name of `kubepods.slice` under the root, without `.slice` (systemd):
    /// `kubepods`, `a-b-kubepods`.
    pub fn kubepods_unit(&self) -> String {
        let mut parts = self.parts.clone();
        parts.push(KUBEPODS.to_string());
        parts.join("-")
    }
}

impl std::fmt::Display for CgroupRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_name_the_same_root() {
        let a = CgroupRoot::parse("/a/b").unwrap();
        assert_eq!(CgroupRoot::parse("/a.slice/a-b.slice").unwrap(), a);
        assert_eq!(CgroupRoot::parse("/a/b/").unwrap(), a);
        assert_eq!(a.levels(), ["/a", "/a/b"]);
        assert_eq!(a.kubepods(), "/a/b/kubepods");
        assert_eq!(a.kubepods_unit(), "a-b-kubepods");
        assert_eq!(a.to_string(), "/a/b");
    }

    #[test]
    fn the_default_root_is_the_hierarchy_root() {
        let r = CgroupRoot::parse("/").unwrap();
        assert!(r.is_default());
        assert_eq!(r, CgroupRoot::default());
        assert!(r.levels().is_empty());
        assert_eq!(r.kubepods(), "/kubepods");
        assert_eq!(r.kubepods_unit(), "kubepods");
        assert_eq!(r.to_string(), "/");
    }

    #[test]
    fn refuses_what_could_escape_or_confuse_the_tree() {
        for bad in [
            "",
            "a",
            "/a/../b",
            "/./a",
            "/a b",
            "/a-b",
            "/kubepods",
            "/a.slice/a-.slice",
            "/x/kubepods.slice",
        ] {
            assert!(CgroupRoot::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
