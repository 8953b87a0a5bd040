//! Seccomp profiles: `RuntimeDefault` is containerd's default profile
//! (contrib/seccomp/seccomp_default.go, amd64/arm64), `Localhost` a profile file in the
//! OCI or Docker JSON format.

use serde_json::{json, Value};

mod syscalls;
use syscalls::{ALLOWED, BY_CAPABILITY};

/// Why a `Localhost` seccomp profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("no defaultAction")]
    NoDefaultAction,
    #[error("conditional rules (includes/excludes) are not supported")]
    Conditional,
    #[error("a syscall rule has no action")]
    NoAction,
}

/// The namespace flags clone(2) may not use without CAP_SYS_ADMIN.
const CLONE_NS_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

fn arches() -> Value {
    if cfg!(target_arch = "aarch64") {
        json!(["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"])
    } else {
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    }
}

fn allow(names: &[&str]) -> Value {
    json!({"names": names, "action": "SCMP_ACT_ALLOW"})
}

/// containerd's `DefaultProfile` for a container with these bounding capabilities.
pub fn runtime_default(caps: &[String]) -> Value {
    let mut rules = vec![allow(ALLOWED)];
    for persona in [0x0u64, 0x0008, 0x20000, 0x20008, 0xffff_ffff] {
        rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]}));
    }
    // Every kernel hostlet runs on is newer than 4.8.
    rules.push(allow(&["ptrace"]));
    if cfg!(target_arch = "aarch64") {
        rules.push(allow(&[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ]));
    } else {
        rules.push(allow(&["arch_prctl", "modify_ldt"]));
    }
    let has = |c: &str| caps.iter().any(|x| x == c);
    for (cap, names) in BY_CAPABILITY {
        if has(cap) {
            rules.push(allow(names));
        }
    }
    if !has("CAP_SYS_ADMIN") {
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        // ENOSYS, not EPERM, so libcs fall back to clone (moby/moby#42681).
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": libc::ENOSYS}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": arches(),
        "syscalls": rules,
    })
}

/// A Localhost profile: the OCI `linux.seccomp` object, or Docker's format (`name` or
/// `names` per rule, `archMap`).
pub fn localhost(bytes: &[u8]) -> Result<Value, ProfileError> {
    let v: Value = serde_json::from_slice(bytes).map_err(ProfileError::Json)?;
    let obj = v.as_object().ok_or(ProfileError::NotAnObject)?;
    let mut out = serde_json::Map::new();
    let default = obj
        .get("defaultAction")
        .ok_or(ProfileError::NoDefaultAction)?
        .clone();
    out.insert("defaultAction".into(), default);
    for k in [
        "defaultErrnoRet",
        "flags",
        "listenerPath",
        "listenerMetadata",
    ] {
        if let Some(x) = obj.get(k) {
            out.insert(k.into(), x.clone());
        }
    }
    let mut arches: Vec<Value> = obj
        .get("architectures")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for m in obj
        .get("archMap")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(a) = m.get("architecture") {
            arches.push(a.clone());
        }
        arches.extend(
            m.get("subArchitectures")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
    }
    if !arches.is_empty() {
        out.insert("architectures".into(), Value::Array(arches));
    }
    let mut rules = Vec::new();
    for r in obj
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if r.get("includes")
            .is_some_and(|x| !crate::manifest::support::is_zero(x))
            || r.get("excludes")
                .is_some_and(|x| !crate::manifest::support::is_zero(x))
        {
            return Err(ProfileError::Conditional);
        }
        let mut names: Vec<Value> = r
            .get("names")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(n) = r.get("name") {
            names.push(n.clone());
        }
        let action = r.get("action").cloned().ok_or(ProfileError::NoAction)?;
        let mut rule = json!({"names": names, "action": action});
        for k in ["args", "errnoRet"] {
            if let Some(x) = r.get(k) {
                rule[k] = x.clone();
            }
        }
        rules.push(rule);
    }
    out.insert("syscalls".into(), Value::Array(rules));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_follows_capabilities() {
        let p = runtime_default(&["CAP_CHOWN".into()]);
        let s = p.to_string();
        assert!(
            s.contains("\"clone3\""),
            "clone3 gets ENOSYS without SYS_ADMIN"
        );
        assert!(!s.contains("\"mount\""));
        let p = runtime_default(&["CAP_SYS_ADMIN".into()]);
        assert!(p.to_string().contains("\"mount\""));
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    }

    #[test]
    fn docker_format_localhost_profile() {
        let p = localhost(br#"{"defaultAction":"SCMP_ACT_ALLOW","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
            "syscalls":[{"name":"mkdir","action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#).unwrap();
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        assert_eq!(p["syscalls"][0]["names"], json!(["mkdir"]));
        assert!(localhost(b"[]").is_err());
    }
}
