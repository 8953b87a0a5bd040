//! The container's process: argv from command/args and the image's ENTRYPOINT/CMD, the
//! environment, the working directory and the user.

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilitiesBuilder, Process, ProcessBuilder, UserBuilder,
};
use serde::Deserialize;

use super::security::Security;
use super::{oci, BundleError, BundleInputs};
use crate::cgroups::Compute;
use crate::manifest::quantity::QuantityError;
use crate::manifest::quantity::{parse_cpu_millis, parse_memory_bytes};
use crate::manifest::{ObjectKind, ObjectSet};
use crate::node::NodeInfo;

/// kubelet's rule: command replaces ENTRYPOINT (and drops CMD); args replace CMD. `$(VAR)`
/// in command and args expands from the container's env (`vars`), never the image's.
/// The container's process: argv, environment, working directory, user, capabilities and
/// OOM score.
pub fn process(
    pod: &Pod,
    c: &Container,
    inp: &BundleInputs,
    sec: &Security,
    hostname: &str,
) -> Result<Process, BundleError> {
    let image = inp.image.config().as_ref();
    let vars = container_env(pod, c, inp.node, inp.objects)?;
    let args = argv(c, image, &vars)?;
    let mut env = env(image, &vars, hostname);
    let tty = c.tty == Some(true);
    // containerd's WithTTY: a terminal gets TERM=xterm unless the image or pod sets it.
    if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| {
            image
                .and_then(|i| i.working_dir().clone())
                .filter(|w| !w.is_empty())
        })
        .unwrap_or_else(|| "/".into());
    let oom_score_adj = crate::cgroups::oom_score_adj(pod, c, inp.node.memory_bytes)
        .max(inp.node.min_oom_score_adj);

    let mut user = UserBuilder::default().uid(sec.uid).gid(sec.gid);
    if !sec.additional_gids.is_empty() {
        user = user.additional_gids(sec.additional_gids.clone());
    }
    let caps = capabilities(&sec.caps)?;
    let mut capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(oci)?;
    // Unset builder fields take oci-spec's defaults (runc's example config): the
    // inheritable and ambient sets and a nofile rlimit, none of which hostlet sets.
    capabilities.set_inheritable(None).set_ambient(None);
    let mut process = ProcessBuilder::default()
        .terminal(tty)
        .user(user.build().map_err(oci)?)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .oom_score_adj(oom_score_adj)
        .build()
        .map_err(oci)?;
    process.set_rlimits(None);
    // Absent, not false, when unset: libcontainer 0.7 loads the seccomp filter after
    // dropping capabilities whenever the field is present, which fails without
    // no_new_privs (EACCES: "failed to load seccomp context").
    process.set_no_new_privileges(sec.no_new_privs.then_some(true));
    process.set_apparmor_profile(sec.apparmor.clone());
    Ok(process)
}

/// Capability names (`CAP_NET_ADMIN`) as oci-spec's type; an unknown name is refused as
/// oci-spec refuses it in a config file.
fn capabilities(names: &[String]) -> Result<Capabilities, BundleError> {
    names
        .iter()
        .map(|name| {
            Capability::deserialize(
                serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name),
            )
            .map_err(|e| BundleError::Config(format!("building runtime spec: {e}")))
        })
        .collect()
}

pub fn argv(
    c: &Container,
    image: Option<&ImageConfig>,
    vars: &[(String, String)],
) -> Result<Vec<String>, BundleError> {
    let entrypoint = image
        .and_then(|i| i.entrypoint().clone())
        .unwrap_or_default();
    let cmd = image.and_then(|i| i.cmd().clone()).unwrap_or_default();
    let ex = |v: &Vec<String>| -> Vec<String> { v.iter().map(|s| expand(s, vars)).collect() };
    let argv = match (&c.command, &c.args) {
        (Some(command), args) if !command.is_empty() => {
            let mut v = ex(command);
            v.extend(args.as_ref().map(ex).unwrap_or_default());
            v
        }
        (_, Some(args)) if !args.is_empty() => {
            let mut v = entrypoint;
            v.extend(ex(args));
            v
        }
        _ => {
            let mut v = entrypoint;
            v.extend(cmd);
            v
        }
    };
    if argv.is_empty() {
        return Err(BundleError::field(
            &c.name,
            "command",
            "no command specified and the image has no ENTRYPOINT or CMD",
        ));
    }
    Ok(argv)
}

/// `k8s.io/kubernetes/third_party/forked/golang/expansion.Expand`: `$(NAME)` becomes the
/// value of NAME when defined and stays as written otherwise; `$$` is a literal `$`.
pub fn expand(input: &str, vars: &[(String, String)]) -> String {
    let b = input.as_bytes();
    let mut out = String::new();
    let mut checkpoint = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            out.push_str(&input[checkpoint..i]);
            let rest = &input[i + 1..];
            let advance = match b[i + 1] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match vars.iter().rev().find(|(n, _)| n == name) {
                            Some((_, v)) => out.push_str(v),
                            None => out.push_str(&format!("$({name})")),
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // "$" and the next character, kept as written.
                    let ch = rest.chars().next().map_or(1, char::len_utf8);
                    out.push('$');
                    out.push_str(&rest[..ch]);
                    ch
                }
            };
            i += advance + 1;
            checkpoint = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&input[checkpoint..]);
    out
}

/// The container's own env, in order, as the kubelet computes it: `envFrom` first, then
/// `env`, whose values expand `$(VAR)` from the variables defined before them; `valueFrom`
/// reads the downward API, ConfigMaps and Secrets.
pub fn container_env(
    pod: &Pod,
    c: &Container,
    node: &NodeInfo,
    objects: &ObjectSet,
) -> Result<Vec<(String, String)>, BundleError> {
    let mut out: Vec<(String, String)> = super::config_env::env_from(pod, c, objects)?;
    for (i, e) in c.env.iter().flatten().enumerate() {
        let refs = e.value_from.as_ref().map(|s| {
            let cm = s.config_map_key_ref.as_ref().map(|r| {
                (
                    ObjectKind::ConfigMap,
                    &r.name,
                    &r.key,
                    r.optional,
                    "configMapKeyRef",
                )
            });
            let sec = s.secret_key_ref.as_ref().map(|r| {
                (
                    ObjectKind::Secret,
                    &r.name,
                    &r.key,
                    r.optional,
                    "secretKeyRef",
                )
            });
            cm.or(sec)
        });
        if let Some(Some((kind, name, key, optional, which))) = refs {
            let r = super::config_env::KeyRef {
                kind,
                name,
                key,
                optional,
                field: format!("env[{i}].valueFrom.{which}"),
            };
            let got = super::config_env::key_ref(pod, c, &r, objects)?;
            if let Some(value) = got {
                match out.iter_mut().find(|(n, _)| *n == e.name) {
                    Some(slot) => slot.1 = value,
                    None => out.push((e.name.clone(), value)),
                }
            }
            continue;
        }
        let value = match &e.value_from {
            None => expand(e.value.as_deref().unwrap_or_default(), &out),
            Some(src) => match (&src.field_ref, &src.resource_field_ref) {
                (Some(f), _) => field_ref(pod, &f.field_path, node).ok_or_else(|| {
                    BundleError::field(
                        &c.name,
                        &format!("env[{i}].valueFrom.fieldRef.fieldPath"),
                        &format!("unsupported field path {:?}", f.field_path),
                    )
                })?,
                (None, Some(r)) => resource_field(pod, c, r, node).map_err(|e| {
                    BundleError::field(
                        &c.name,
                        &format!("env[{i}].valueFrom.resourceFieldRef"),
                        &e.to_string(),
                    )
                })?,
                (None, None) => {
                    return Err(BundleError::field(
                        &c.name,
                        &format!("env[{i}].valueFrom"),
                        "must specify a source",
                    ))
                }
            },
        };
        match out.iter_mut().find(|(n, _)| *n == e.name) {
            Some(slot) => slot.1 = value,
            None => out.push((e.name.clone(), value)),
        }
    }
    Ok(out)
}

/// Image env first, then the container's, a later name replacing an earlier one in place.
pub fn env(
    image: Option<&ImageConfig>,
    container: &[(String, String)],
    hostname: &str,
) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    fn put(out: &mut Vec<(String, String)>, name: &str, value: String) {
        match out.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => out.push((name.to_string(), value)),
        }
    }
    for kv in image.and_then(|i| i.env().clone()).unwrap_or_default() {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        put(&mut out, k, v.to_string());
    }
    for (k, v) in container {
        put(&mut out, k, v.clone());
    }
    if !out.iter().any(|(n, _)| n == "PATH") {
        put(
            &mut out,
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    if !out.iter().any(|(n, _)| n == "HOSTNAME") {
        put(&mut out, "HOSTNAME", hostname.to_string());
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The downward API fields that exist without pod networking (a pod without hostNetwork
/// has no IP: `status.podIP` is empty).
pub fn field_ref(pod: &Pod, path: &str, node: &NodeInfo) -> Option<String> {
    let m = &pod.metadata;
    let lookup = |map: &Option<std::collections::BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let key_of = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    let host_network = pod.spec.as_ref()?.host_network.unwrap_or(false);
    let pod_ip = if host_network {
        node.host_ip.clone()
    } else {
        String::new()
    };
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => String::new(),
        "status.hostIP" | "status.hostIPs" => node.host_ip.clone(),
        "status.podIP" | "status.podIPs" => pod_ip,
        _ => {
            if let Some(k) = key_of("metadata.labels['") {
                lookup(&m.labels, &k)
            } else if let Some(k) = key_of("metadata.annotations['") {
                lookup(&m.annotations, &k)
            } else {
                return None;
            }
        }
    })
}

/// Why a `resourceFieldRef` has no value.
#[derive(Debug, thiserror::Error)]
pub enum ResourceFieldError {
    #[error("no container named {0:?}")]
    NoContainer(String),
    #[error("{0}")]
    Divisor(QuantityError),
    #[error("divisor must be positive")]
    DivisorNotPositive,
    #[error("unsupported resource {0:?}")]
    Resource(String),
}

/// `resourceFieldRef`: a request or limit of a container divided by `divisor`, rounded up;
/// a missing limit is the pod-level limit when the pod sets one (KEP-2837), else the
/// node's allocatable amount (the kubelet's MergeContainerResourceLimits).
pub fn resource_field(
    pod: &Pod,
    c: &Container,
    r: &ResourceFieldSelector,
    node: &NodeInfo,
) -> Result<String, ResourceFieldError> {
    let target = match r.container_name.as_deref() {
        None | Some("") => c,
        Some(name) => pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|x| x.name == name))
            .ok_or_else(|| ResourceFieldError::NoContainer(name.to_string()))?,
    };
    let res = Compute::of(target);
    let div = |milli: bool| -> Result<i64, ResourceFieldError> {
        let d = match &r.divisor {
            None => return Ok(if milli { 1000 } else { 1 }),
            Some(q) if milli => parse_cpu_millis(q).map_err(ResourceFieldError::Divisor)?,
            Some(q) => parse_memory_bytes(q).map_err(ResourceFieldError::Divisor)?,
        };
        if d <= 0 {
            return Err(ResourceFieldError::DivisorNotPositive);
        }
        Ok(d)
    };
    let level = crate::cgroups::pod_level::PodLevel::of(pod).unwrap_or_default();
    let ceil = |v: i64, d: i64| (v + d - 1).div_euclid(d);
    let v = match r.resource.as_str() {
        "limits.cpu" => ceil(
            res.cpu_limit.or(level.cpu_limit).unwrap_or(node.cpu_milli),
            div(true)?,
        ),
        "requests.cpu" => ceil(res.cpu_request.unwrap_or(0), div(true)?),
        "limits.memory" => ceil(
            res.memory_limit
                .or(level.memory_limit)
                .unwrap_or(node.memory_bytes),
            div(false)?,
        ),
        "requests.memory" => ceil(res.memory_request.unwrap_or(0), div(false)?),
        other => return Err(ResourceFieldError::Resource(other.to_string())),
    };
    Ok(v.to_string())
}
