//! The container's process: argv from command/args and the image's ENTRYPOINT/CMD, the
//! environment, the working directory and the user.

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::image::Config as ImageConfig;

use super::BundleError;

/// kubelet's rule: command replaces ENTRYPOINT (and drops CMD); args replace CMD.
pub fn argv(c: &Container, image: Option<&ImageConfig>) -> Result<Vec<String>, BundleError> {
    let entrypoint = image
        .and_then(|i| i.entrypoint().clone())
        .unwrap_or_default();
    let cmd = image.and_then(|i| i.cmd().clone()).unwrap_or_default();
    let argv = match (&c.command, &c.args) {
        (Some(command), args) if !command.is_empty() => {
            let mut v = command.clone();
            v.extend(args.iter().flatten().cloned());
            v
        }
        (_, Some(args)) if !args.is_empty() => {
            let mut v = entrypoint;
            v.extend(args.iter().cloned());
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

/// Image env first, then the container's, a later name replacing an earlier one in place.
pub fn env(
    pod: &Pod,
    c: &Container,
    image: Option<&ImageConfig>,
) -> Result<Vec<String>, BundleError> {
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
    for (i, e) in c.env.iter().flatten().enumerate() {
        let value = match &e.value_from {
            None => e.value.clone().unwrap_or_default(),
            Some(src) => match &src.field_ref {
                Some(f) => field_ref(pod, &f.field_path).ok_or_else(|| {
                    BundleError::field(
                        &c.name,
                        &format!("env[{i}].valueFrom.fieldRef.fieldPath"),
                        &format!("unsupported field path {:?}", f.field_path),
                    )
                })?,
                None => {
                    return Err(BundleError::field(
                        &c.name,
                        &format!("env[{i}].valueFrom"),
                        "only fieldRef is supported",
                    ))
                }
            },
        };
        put(&mut out, &e.name, value);
    }
    if !out.iter().any(|(n, _)| n == "PATH") {
        put(
            &mut out,
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    if !out.iter().any(|(n, _)| n == "HOSTNAME") {
        if let Some(name) = &pod.metadata.name {
            put(&mut out, "HOSTNAME", name.clone());
        }
    }
    Ok(out.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// The downward API fields that exist without pod networking.
fn field_ref(pod: &Pod, path: &str) -> Option<String> {
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
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => String::new(),
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

/// The image's USER as uid/gid: numeric, or names looked up in the image's own
/// /etc/passwd and /etc/group (as runc does, never the host's).
pub fn user(
    image: Option<&ImageConfig>,
    rootfs: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<(u32, u32), BundleError> {
    let spec = image.and_then(|i| i.user().clone()).unwrap_or_default();
    if spec.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec.as_str(), None),
    };
    let bad = |what: &str| BundleError::Config(format!("image user {spec:?}: {what}"));
    let (uid, primary) = match u.parse::<u32>() {
        Ok(uid) => (
            uid,
            lookup(rootfs, "etc/passwd", |f| f[2] == u, 3).unwrap_or(0),
        ),
        Err(_) => {
            let uid = lookup(rootfs, "etc/passwd", |f| f[0] == u, 2)
                .ok_or_else(|| bad("no such user in the image's /etc/passwd"))?;
            (
                uid,
                lookup(rootfs, "etc/passwd", |f| f[0] == u, 3).unwrap_or(0),
            )
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(rootfs, "etc/group", |f| f[0] == g, 2)
                .ok_or_else(|| bad("no such group in the image's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

fn lookup(
    rootfs: &dyn Fn(&str) -> Option<Vec<u8>>,
    file: &str,
    pred: impl Fn(&[&str]) -> bool,
    field: usize,
) -> Option<u32> {
    let text = String::from_utf8(rootfs(file)?).ok()?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > field && pred(f))
        .and_then(|f| f[field].parse().ok())
}
