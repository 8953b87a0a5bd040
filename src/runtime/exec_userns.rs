//! The exec helper's way into a container with a user namespace of its own (`hostUsers:
//! false`), before libcontainer's tenant builder runs.
//!
//! libcontainer 0.7's tenant builder joins the init's namespaces but not its user
//! namespace: the helper joins it itself, so the command takes the pod's mapped IDs
//! instead of running as host root inside the pod's namespaces.
//!
//! Under the systemd cgroup driver that alone breaks the cgroup step: libcgroups asks
//! systemd over the system bus only when it is "true root" (the initial uid_map), so from
//! inside the pod's user namespace it reaches for a *session* bus to move the exec into
//! the container's scope, and a system agent has none. Handing it
//! `DBUS_SESSION_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket` would not make that
//! right: the session path looks the bus owner's UID up with `busctl --user status`,
//! which the system bus has no answer to, and would then talk to PID 1 as if it were a
//! user's manager. runc never asks systemd for an exec: it writes the process into the
//! container's cgroup (`cgroup.procs`) directly. The helper makes libcontainer do the
//! same. In a mount namespace of the helper's own, the bundle's `config.json` is covered
//! by a copy whose `cgroupsPath` is the scope's cgroup directory as an absolute path,
//! which libcgroups always writes to directly (an absolute path is never systemd's). The
//! copy is on a tmpfs of that namespace (the config may hold Secret values, which never
//! reach a disk) and goes away with the helper; the agent, the monitor, libcontainer's
//! delete and the container itself see the real file and the real scope.

use std::fs::File;
use std::path::Path;

use libcontainer::container::Container;
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::Spec;

/// Where the private tmpfs goes in the helper's own mount namespace: a directory every
/// host has and nothing of the agent's lives under (unlike /tmp or /run, which may hold
/// the root dir or the bundle).
const SCRATCH: &str = "/dev/shm";

/// Joins the user namespace of the container's init when it has its own; under the
/// systemd driver, first gives libcontainer the container's cgroup by path (above).
/// Nothing to do for a container with the host's users.
pub(super) fn enter(runtime_root: &Path, id: &str) -> Result<(), String> {
    let c = Container::load(runtime_root.join(id))
        .map_err(|e| format!("loading the container: {e}"))?;
    let Some(init) = c.pid() else {
        return Ok(());
    };
    let theirs = format!("/proc/{init}/ns/user");
    let (Ok(mine), Ok(other)) = (
        std::fs::read_link("/proc/self/ns/user"),
        std::fs::read_link(&theirs),
    ) else {
        return Err(format!("reading {theirs}"));
    };
    if mine == other {
        return Ok(());
    }
    let ns = File::open(&theirs).map_err(|e| format!("{theirs}: {e}"))?;
    if c.systemd() {
        // Mounts need host root: before the user namespace.
        cgroup_by_path(&c.bundle().join("config.json"))?;
    }
    // The helper keeps its host IDs (it still reads the container's root-only records);
    // libcontainer sets the command's IDs, mapped ones, before it runs it.
    setns(&ns, CloneFlags::CLONE_NEWUSER).map_err(|e| format!("joining {theirs}: {e}"))
}

/// Covers `config` (in a new mount namespace of this process) with a copy whose
/// `cgroupsPath` is the absolute cgroup directory of the systemd form `slice:prefix:name`.
fn cgroup_by_path(config: &Path) -> Result<(), String> {
    let at = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let spec = Spec::load(config).map_err(|e| at(&config.display().to_string(), &e))?;
    let Some(spec) = with_cgroup_dir(spec) else {
        return Ok(());
    };

    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| at("a mount namespace of its own", &e))?;
    // Nothing mounted here may reach the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| at("making its mounts private", &e))?;
    mount(
        Some("tmpfs"),
        SCRATCH,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .map_err(|e| at(&format!("a tmpfs on {SCRATCH}"), &e))?;
    let copy = Path::new(SCRATCH).join("config.json");
    spec.save(&copy)
        .map_err(|e| at(&copy.display().to_string(), &e))?;
    mount(
        Some(&copy),
        config,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| at(&format!("covering {}", config.display()), &e))
}

/// `spec` with its systemd-form `cgroupsPath` replaced by the scope's absolute cgroup
/// directory; None when the path is absent or already a directory.
fn with_cgroup_dir(mut spec: Spec) -> Option<Spec> {
    let mut linux = spec.linux().clone()?;
    let path = linux.cgroups_path().as_ref()?.to_str()?;
    if path.starts_with('/') {
        return None;
    }
    let dir = crate::cgroups::systemd::fs_path(path);
    linux.set_cgroups_path(Some(dir.into()));
    spec.set_linux(Some(linux));
    Some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxBuilder;

    fn spec(cgroups_path: Option<&str>) -> Spec {
        let mut s = Spec::default();
        let mut linux = LinuxBuilder::default().build().unwrap();
        linux.set_cgroups_path(cgroups_path.map(Into::into));
        s.set_linux(Some(linux));
        s
    }

    fn dir(s: &Spec) -> Option<String> {
        let p = s.linux().as_ref()?.cgroups_path().as_ref()?;
        Some(p.to_string_lossy().into_owned())
    }

    #[test]
    fn a_systemd_cgroups_path_becomes_the_scope_directory() {
        let s = with_cgroup_dir(spec(Some("kubepods-besteffort.slice:hostlet:abc-c-0"))).unwrap();
        assert_eq!(
            dir(&s).as_deref(),
            Some("/kubepods.slice/kubepods-besteffort.slice/hostlet-abc-c-0.scope")
        );
        // Everything else is kept.
        assert_eq!(s.process(), Spec::default().process());
    }

    #[test]
    fn a_directory_or_no_cgroups_path_is_left_alone() {
        assert!(with_cgroup_dir(spec(Some("/kubepods/pod1/c"))).is_none());
        assert!(with_cgroup_dir(spec(None)).is_none());
    }
}
