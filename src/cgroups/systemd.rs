//! The systemd cgroup driver, as the kubelet lays it out with `cgroupDriver: systemd`:
//! the pod cgroup is the slice `kubepods[-burstable|-besteffort]-pod<UID>.slice` (the uid's
//! `-` escaped as `_`), containers are scopes `hostlet-<ID>.scope` inside it that
//! libcontainer starts (cgroupsPath `slice:hostlet:ID`). hostlet starts the QoS and pod
//! slices as transient units with the pod-level limits as unit properties (MemoryMax,
//! CPUWeight, CPUQuotaPerSecUSec, TasksMax), so systemd itself keeps them in force when it
//! re-realizes the tree; stopping the pod slice removes it.
//!
//! The D-Bus calls go through `busctl`/`systemctl`, which ship with systemd: libcgroups
//! keeps its D-Bus client private (`mod dbus_native` in libcgroups 0.7.0) and no D-Bus
//! crate is in the lock. Measured on the dev host (2 shared cores under load, two runs of
//! n=200 each, user+sys CPU per call): `busctl call` of GetId on a private dbus-daemon
//! 3.9–5.4 ms, `busctl --version` 3.8–5.3 ms, `/bin/true` 0.8–1.1 ms; so the cost is
//! busctl's start, not the bus. A pod start with this driver makes up to 3 calls here
//! (kubepods, QoS and pod slices) plus 3 from `NodeCgroups::pod_started` (it rewrites the
//! three levels for every pod, burstable or not), in series before the first container:
//! 23–32 ms of CPU per pod start, more than row 1 takes in all (21.7 ms on this host,
//! cgroupfs). In the VM suite (systemd 252, cgroup v2, software emulation ~5× slower than
//! the host; `vm/run.sh -- --nocapture`, tests/systemd.rs prints it from the debug log of
//! each call), the agent's start and its first pod took 9 calls, 934 ms in all, median
//! 81 ms a call (57–164): the calls, not the bus work, are most of a pod start with this
//! driver. Decision: keep busctl (no D-Bus crate in the tree, and this driver only runs
//! where systemd is PID 1), and cut the calls first: write the QoS levels only when the
//! burstable set changed; a native D-Bus connection is the next step if that is not enough.

use std::path::Path;
use std::process::Command;

use super::hugepages;
use super::limits::{shares_to_weight, Levels, PodCgroup, PodLimits, Settings, CFS_PERIOD};
use super::qos::QosClass;
use super::root::CgroupRoot;
use super::{write, CgroupError, CommandError};

// The unit names are defined beside `PodCgroup`, where a container's `cgroupsPath` is
// made without calling into the driver; this file is where readers look for them.
pub use super::limits::{pod_slice, SCOPE_PREFIX};

/// The slices from `kubepods.slice` (under `root`) down to the QoS level, outermost
/// first; systemd makes the root's own slices as their parents.
pub fn qos_slices(root: &CgroupRoot, qos: QosClass) -> Vec<String> {
    let kubepods = root.kubepods_unit();
    let mut out = vec![format!("{kubepods}.slice")];
    if !qos.dir().is_empty() {
        out.push(format!("{kubepods}-{}.slice", qos.dir()));
    }
    out
}

/// The cgroup directory of a slice, relative to the cgroup root: `a-b.slice` is
/// `/a.slice/a-b.slice`.
pub fn expand_slice(slice: &str) -> String {
    let stem = slice.strip_suffix(".slice").unwrap_or(slice);
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path = format!("{path}/{prefix}.slice");
    }
    path
}

/// The cgroup directory (relative to the cgroup root) of a spec's `cgroupsPath`: the
/// systemd form `slice:prefix:name` is `<slice dirs>/prefix-name.scope`; anything else
/// is already a path.
pub fn fs_path(cgroups_path: &str) -> String {
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    match parts.as_slice() {
        [slice, prefix, name] if !cgroups_path.starts_with('/') => {
            format!("{}/{prefix}-{name}.scope", expand_slice(slice))
        }
        _ => cgroups_path.to_string(),
    }
}

/// A D-Bus property of a transient unit, as busctl takes it: name, signature, value.
pub(crate) type Prop = (&'static str, &'static str, String);

fn slice_props(description: String) -> Vec<Prop> {
    let mut p: Vec<Prop> = vec![("Description", "s", description)];
    for acct in [
        "MemoryAccounting",
        "CPUAccounting",
        "TasksAccounting",
        "IOAccounting",
    ] {
        p.push((acct, "b", "true".into()));
    }
    p.push(("DefaultDependencies", "b", "false".into()));
    p
}

/// The unit properties of a pod slice: the kubelet's `ResourceConfigForPod`.
pub fn pod_props(cg: &PodCgroup, limits: &PodLimits) -> Vec<Prop> {
    let mut p = slice_props(format!("hostlet pod {}", cg.uid));
    p.push((
        "CPUWeight",
        "t",
        shares_to_weight(limits.cpu_shares).to_string(),
    ));
    if let Some(q) = limits.cpu_quota {
        // systemd takes µs per second of wall time and writes `quota period` itself.
        let per_sec = q.max(0) as u64 * 1_000_000 / CFS_PERIOD;
        p.push(("CPUQuotaPerSecUSec", "t", per_sec.to_string()));
    }
    if let Some(m) = limits.memory {
        p.push(("MemoryMax", "t", m.max(0).to_string()));
    }
    if let Some(n) = limits.pids {
        p.push(("TasksMax", "t", n.max(0).to_string()));
    }
    p
}

fn run(cmd: &mut Command) -> Result<(), CommandError> {
    let command = format!("{cmd:?}");
    let started = std::time::Instant::now();
    let output = cmd.output();
    // What each call costs a pod start (the decision above is measured with it).
    tracing::debug!(elapsed_us = started.elapsed().as_micros() as u64, %command, "systemd call");
    match output {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(CommandError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )),
        Err(error) => Err(CommandError::Spawn { command, error }),
    }
}

fn systemd_err(unit: &str, reason: CommandError) -> CgroupError {
    CgroupError::Systemd {
        unit: unit.to_string(),
        reason,
    }
}

/// `busctl call` of a method of systemd's manager object on the system bus; the caller
/// appends the method's arguments.
pub(crate) fn manager_call(method: &str, signature: &str) -> Command {
    let mut cmd = Command::new("busctl");
    cmd.args([
        "call",
        "--system",
        "--quiet",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        method,
        signature,
    ]);
    cmd
}

/// Starts a transient slice; one that exists already (a pod an earlier agent started, a
/// QoS level) is left as it is.
/// Starts `unit` with `props`; false when it was there already (its properties are then
/// those it had).
fn start_slice(unit: &str, props: &[Prop]) -> Result<bool, CgroupError> {
    let mut cmd = manager_call("StartTransientUnit", "ssa(sv)a(sa(sv))");
    cmd.args([unit, "replace"]);
    cmd.arg(props.len().to_string());
    for (name, sig, value) in props {
        cmd.args([*name, *sig, value.as_str()]);
    }
    cmd.arg("0");
    match run(&mut cmd) {
        Ok(()) => {
            tracing::debug!(unit, "started slice");
            Ok(true)
        }
        Err(CommandError::Refused(m)) if unit_exists(&m) => Ok(false),
        Err(m) => Err(systemd_err(unit, m)),
    }
}

/// systemd's refusals to start a transient unit that is there: `UnitExists` ("Unit X
/// already exists.") and, for a unit loaded because a sibling or child named it as its
/// slice, "Unit X was already loaded or has a fragment file.".
pub fn unit_exists(message: &str) -> bool {
    message.contains("already exists") || message.contains("already loaded")
}

/// Starts `kubepods.slice`, the QoS slice and the pod slice with its limits.
pub fn create(cg: &PodCgroup, limits: &PodLimits) -> Result<(), CgroupError> {
    let kubepods = format!("{}.slice", cg.root.kubepods_unit());
    for slice in qos_slices(&cg.root, cg.qos) {
        let mut props = slice_props(format!("hostlet {slice}"));
        // The kubelet's besteffort level: the least cpu weight there is.
        if cg.qos == QosClass::BestEffort && slice != kubepods {
            props.push(("CPUWeight", "t", "1".into()));
        }
        start_slice(&slice, &props)?;
    }
    // A pod slice that is there already (loaded because a scope named it, or left by an
    // earlier agent) keeps whatever limits it had unless they are set again: the pod's
    // limits hold either way.
    let (unit, props) = (pod_slice(cg), pod_props(cg, limits));
    if !start_slice(&unit, &props)? {
        set_props(&unit, &props)?;
    }
    Ok(())
}

/// Stops the pod slice (and any scope left in it); the QoS slices stay, as with the
/// kubelet.
pub fn remove(cg: &PodCgroup) -> Result<(), CgroupError> {
    let unit = pod_slice(cg);
    match run(Command::new("systemctl").args(["stop", "--quiet", &unit])) {
        Ok(()) => Ok(()),
        Err(CommandError::Refused(m)) if m.contains("not loaded") => Ok(()),
        Err(m) => Err(systemd_err(&unit, m)),
    }
}

/// The unit properties of a node-level slice (`kubepods.slice` or a QoS slice): the
/// kubelet's node allocatable and QoS settings. systemd has no hugetlb properties: those
/// are files ([`write_hugetlb`]).
pub(crate) fn level_props(slice: &str, s: &Settings) -> Vec<Prop> {
    let mut p = slice_props(format!("hostlet {slice}"));
    if let Some(shares) = s.cpu_shares {
        p.push(("CPUWeight", "t", shares_to_weight(shares).to_string()));
    }
    if let Some(m) = s.memory {
        p.push(("MemoryMax", "t", m.max(0).to_string()));
    }
    if let Some(n) = s.pids {
        p.push(("TasksMax", "t", n.max(0).to_string()));
    }
    p
}

/// Sets properties of a running unit (`SetUnitProperties`, runtime only).
pub(crate) fn set_props(unit: &str, props: &[Prop]) -> Result<(), CgroupError> {
    let mut cmd = manager_call("SetUnitProperties", "sba(sv)");
    cmd.args([unit, "true"]);
    // Description and the like are only for a new unit.
    let props: Vec<&Prop> = props
        .iter()
        .filter(|(n, _, _)| !["Description", "DefaultDependencies"].contains(n))
        .collect();
    cmd.arg(props.len().to_string());
    for (name, sig, value) in props {
        cmd.args([*name, *sig, value.as_str()]);
    }
    run(&mut cmd).map_err(|m| systemd_err(unit, m))
}

/// Starts the node-level slices with their limits, or updates the ones that exist.
pub(crate) fn update_levels(
    root: &Path,
    cgroup_root: &CgroupRoot,
    l: &Levels,
) -> Result<(), CgroupError> {
    let kubepods = cgroup_root.kubepods_unit();
    let levels = [
        (format!("{kubepods}.slice"), &l.kubepods),
        (format!("{kubepods}-burstable.slice"), &l.burstable),
        (format!("{kubepods}-besteffort.slice"), &l.besteffort),
    ];
    for (slice, s) in levels {
        let props = level_props(&slice, s);
        let dir = root.join(expand_slice(&slice).trim_start_matches('/'));
        if dir.is_dir() || !start_slice(&slice, &props)? {
            set_props(&slice, &props)?;
        }
        write_hugetlb(root, &slice, &s.hugetlb)?;
    }
    Ok(())
}

/// Writes hugetlb limits into a slice's cgroup, delegating the controller down to it
/// first: systemd does not manage hugetlb, so it neither enables nor resets it.
pub(crate) fn write_hugetlb(
    root: &Path,
    slice: &str,
    values: &[(String, i64)],
) -> Result<(), CgroupError> {
    if values.is_empty() {
        return Ok(());
    }
    let rel = expand_slice(slice);
    let mut dir = root.to_path_buf();
    for part in rel.trim_start_matches('/').split('/') {
        delegate_hugetlb(&dir)?;
        dir = dir.join(part);
        // StartTransientUnit answers once the job is queued; systemd makes the slice's
        // cgroup when the job runs, later on a busy host (seen in the VM under load:
        // `hugetlb.2MB.max: No such file or directory`).
        wait_for_dir(&dir, SLICE_REALIZED);
    }
    hugepages::write_v2(&dir, values)?;
    // The container scopes below a pod slice need the controller too.
    delegate_hugetlb(&dir)
}

/// How long a started slice may take to get its cgroup directory.
const SLICE_REALIZED: std::time::Duration = std::time::Duration::from_secs(10);

fn wait_for_dir(dir: &Path, limit: std::time::Duration) {
    let end = std::time::Instant::now() + limit;
    while !dir.is_dir() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn delegate_hugetlb(dir: &Path) -> Result<(), CgroupError> {
    let subtree = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    if subtree.split_whitespace().any(|c| c == "hugetlb") {
        return Ok(());
    }
    write(dir, "cgroup.subtree_control", "+hugetlb")
}

/// Writes the hugepage limits of a container's spec into its scope. youki's systemd
/// manager sets only what systemd has unit properties for, and huge pages have none (runc
/// writes those files itself). The monitor calls this once libcontainer has created the
/// container in its scope and before the container starts.
pub fn scope_hugepage_limits(cgroups_path: &str, bundle: &Path) -> Result<(), CgroupError> {
    let config = bundle.join("config.json");
    let spec = oci_spec::runtime::Spec::load(&config).map_err(|e| CgroupError::Io {
        path: config.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let values: Vec<(String, i64)> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.hugepage_limits().as_ref())
        .map(|l| {
            l.iter()
                .map(|h| (h.page_size().clone(), h.limit()))
                .collect()
        })
        .unwrap_or_default();
    if values.is_empty() {
        return Ok(());
    }
    let dir = Path::new("/sys/fs/cgroup").join(fs_path(cgroups_path).trim_start_matches('/'));
    hugepages::write_v2(&dir, &values)
}
