//! securityContext, pod-level merged with container-level, as the kubelet and containerd
//! turn it into a runtime config: user and groups, runAsNonRoot, capabilities, privileged,
//! no_new_privs, read-only rootfs, procMount, seccomp and sysctls.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};
use oci_spec::image::Config as ImageConfig;
use serde_json::Value;

use super::{apparmor, defaults, seccomp, users, BundleError};
use crate::node::NodeInfo;

/// What the securityContext decides for one container.
#[derive(Debug)]
pub struct Security {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub privileged: bool,
    pub no_new_privs: bool,
    pub readonly_root: bool,
    /// procMount Unmasked: no masked or read-only /proc paths.
    pub unmasked: bool,
    pub seccomp: Option<Value>,
    pub sysctls: BTreeMap<String, String>,
    /// OCI `process.apparmorProfile` ([`super::apparmor`]).
    pub apparmor: Option<String>,
}

/// Sysctls the kubelet allows without `--allowed-unsafe-sysctls` (pkg/kubelet/sysctl).
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

pub struct Inputs<'a> {
    pub image: Option<&'a ImageConfig>,
    pub image_file: &'a dyn Fn(&str) -> Option<Vec<u8>>,
    pub node: &'a NodeInfo,
    pub seccomp_file: &'a dyn Fn(&str) -> Option<Vec<u8>>,
}

pub fn resolve(pod: &Pod, c: &Container, inp: &Inputs) -> Result<Security, BundleError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let psc: PodSecurityContext = spec.security_context.clone().unwrap_or_default();
    let sc: SecurityContext = c.security_context.clone().unwrap_or_default();

    let run_as_user = sc.run_as_user.or(psc.run_as_user);
    let run_as_non_root = sc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false);
    if run_as_non_root {
        verify_run_as_non_root(pod, c, run_as_user, inp)?;
    }
    let (uid, gid, additional_gids) = ids(c, &psc, &sc, inp)?;

    let privileged = sc.privileged.unwrap_or(false);
    let caps = if privileged {
        defaults::ALL_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        capabilities(&sc)
    };
    let no_new_privs = !privileged && sc.allow_privilege_escalation == Some(false);
    let unmasked = privileged || sc.proc_mount.as_deref() == Some("Unmasked");

    let profile = sc.seccomp_profile.clone().or(psc.seccomp_profile.clone());
    let seccomp = if privileged {
        None
    } else {
        seccomp_for(c, profile.as_ref(), &caps, inp)?
    };

    Ok(Security {
        uid,
        gid,
        additional_gids,
        caps,
        privileged,
        no_new_privs,
        readonly_root: sc.read_only_root_filesystem.unwrap_or(false),
        unmasked,
        seccomp,
        sysctls: sysctls(c, &spec, &psc)?,
        apparmor: apparmor::oci_profile(
            apparmor::requested(pod, c)?,
            privileged,
            inp.node.apparmor,
        )
        .map_err(|m| BundleError::Config(m.into()))?,
    })
}

/// The kubelet's verifyRunAsNonRoot, with its messages.
fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    run_as_user: Option<i64>,
    inp: &Inputs,
) -> Result<(), BundleError> {
    let field = |f: &str, m: String| BundleError::field(&c.name, f, &m);
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let image_user = inp.image.and_then(|i| i.user().clone()).unwrap_or_default();
    match run_as_user {
        Some(0) => {
            return Err(field(
                "securityContext.runAsNonRoot",
                format!(
                "container's runAsUser breaks non-root policy (pod: {pod_name:?}, container: {})",
                c.name
            ),
            ))
        }
        Some(_) => {}
        None => {
            let u = image_user.split(':').next().unwrap_or("");
            match u.parse::<i64>() {
                Ok(0) => return Err(field("securityContext.runAsNonRoot", format!("container has runAsNonRoot and image will run as root (pod: {pod_name:?}, container: {})", c.name))),
                Ok(_) => {}
                Err(_) if u.is_empty() => return Err(field("securityContext.runAsNonRoot", format!("container has runAsNonRoot and image will run as root (pod: {pod_name:?}, container: {})", c.name))),
                Err(_) => return Err(field("securityContext.runAsNonRoot", format!("container has runAsNonRoot and image has non-numeric user ({u}), cannot verify user is non-root (pod: {pod_name:?}, container: {})", c.name))),
            }
        }
    }
    Ok(())
}

/// The process's uid, gid and additional gids: the security contexts' ids over the
/// image's USER, plus the user's groups in the image (unless the pod's
/// `supplementalGroupsPolicy` is Strict) and the pod's supplemental groups.
fn ids(
    c: &Container,
    psc: &PodSecurityContext,
    sc: &SecurityContext,
    inp: &Inputs,
) -> Result<(u32, u32, Vec<u32>), BundleError> {
    let field = |f: &str, m: String| BundleError::field(&c.name, f, &m);
    let run_as_user = sc.run_as_user.or(psc.run_as_user);
    let run_as_group = sc.run_as_group.or(psc.run_as_group);
    let (image_uid, image_gid) = users::user(inp.image, inp.image_file)?;
    let to_u32 =
        |f: &str, v: i64| u32::try_from(v).map_err(|_| field(f, format!("{v} is not a valid id")));
    let uid = match run_as_user {
        Some(u) => to_u32("securityContext.runAsUser", u)?,
        None => image_uid,
    };
    let gid = match (run_as_group, run_as_user) {
        (Some(g), _) => to_u32("securityContext.runAsGroup", g)?,
        // A uid given without a group: its primary group in the image, else 0 (containerd).
        (None, Some(_)) => users::primary_gid(uid, inp.image_file).unwrap_or(0),
        (None, None) => image_gid,
    };
    // Strict: only the groups the pod names, not those the image's /etc/group gives the
    // user (KEP-3619); Merge, the default, takes both.
    let strict = psc.supplemental_groups_policy.as_deref() == Some("Strict");
    let mut additional_gids = if strict {
        Vec::new()
    } else {
        users::member_gids(uid, inp.image_file)
    };
    for g in psc
        .supplemental_groups
        .iter()
        .flatten()
        .chain(psc.fs_group.iter())
    {
        let g = to_u32("securityContext.supplementalGroups", *g)?;
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok((uid, gid, additional_gids))
}

/// The pod's sysctls: only the kubelet's safe ones, and none of the host's namespaces.
fn sysctls(
    c: &Container,
    spec: &PodSpec,
    psc: &PodSecurityContext,
) -> Result<BTreeMap<String, String>, BundleError> {
    let field = |f: &str, m: String| BundleError::field(&c.name, f, &m);
    let host_network = spec.host_network.unwrap_or(false);
    let host_ipc = spec.host_ipc.unwrap_or(false);
    let mut sysctls = BTreeMap::new();
    for (i, s) in psc.sysctls.iter().flatten().enumerate() {
        let f = format!("spec.securityContext.sysctls[{i}]");
        let name = s.name.replace('/', ".");
        if !SAFE_SYSCTLS.contains(&name.as_str()) {
            return Err(field(&f, format!("SysctlForbidden: {name} is not a safe sysctl (unsafe sysctls are not supported)")));
        }
        if host_network && name.starts_with("net.") {
            return Err(field(
                &f,
                format!("SysctlForbidden: {name} is forbidden with hostNetwork"),
            ));
        }
        if host_ipc && name.starts_with("kernel.shm") {
            return Err(field(
                &f,
                format!("SysctlForbidden: {name} is forbidden with hostIPC"),
            ));
        }
        sysctls.insert(name, s.value.clone());
    }
    Ok(sysctls)
}

fn normalize_cap(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// containerd's order: add ALL, drop ALL, then the named adds, then the named drops.
fn capabilities(sc: &SecurityContext) -> Vec<String> {
    let mut caps: Vec<String> = defaults::CAPABILITIES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let Some(cs) = &sc.capabilities else {
        return caps;
    };
    let add = cs.add.clone().unwrap_or_default();
    let drop = cs.drop.clone().unwrap_or_default();
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    if add.iter().any(is_all) {
        caps = defaults::ALL_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    if drop.iter().any(is_all) {
        caps.clear();
    }
    for c in add.iter().filter(|c| !is_all(c)) {
        let c = normalize_cap(c);
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    for c in drop.iter().filter(|c| !is_all(c)) {
        let c = normalize_cap(c);
        caps.retain(|x| *x != c);
    }
    caps
}

fn seccomp_for(
    c: &Container,
    profile: Option<&SeccompProfile>,
    caps: &[String],
    inp: &Inputs,
) -> Result<Option<Value>, BundleError> {
    let field = |m: String| BundleError::field(&c.name, "securityContext.seccompProfile", &m);
    let kind = match profile {
        Some(p) => p.type_.as_str(),
        None if inp.node.seccomp_default => "RuntimeDefault",
        None => "Unconfined",
    };
    match kind {
        "RuntimeDefault" => Ok(Some(seccomp::runtime_default(caps))),
        "Unconfined" => Ok(None),
        "Localhost" => {
            let rel = profile
                .and_then(|p| p.localhost_profile.clone())
                .unwrap_or_default();
            let path = std::path::Path::new(&rel);
            if rel.is_empty()
                || path.is_absolute()
                || path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(field(format!(
                    "localhostProfile {rel:?} must be a relative path inside {}",
                    inp.node.seccomp_dir.display()
                )));
            }
            let bytes = (inp.seccomp_file)(&rel).ok_or_else(|| {
                field(format!(
                    "cannot read {}",
                    inp.node.seccomp_dir.join(&rel).display()
                ))
            })?;
            seccomp::localhost(&bytes).map(Some).map_err(|e| {
                field(format!(
                    "{}: {e}",
                    inp.node.seccomp_dir.join(&rel).display()
                ))
            })
        }
        other => Err(field(format!("unknown seccomp profile type {other:?}"))),
    }
}
