//! A configuration list run as SPEC.md "Network configuration lists" says: ADD through
//! the plugins in order, each given the previous one's result; CHECK and DEL with the
//! cached ADD result; DEL in reverse order. A failed ADD is undone with a DEL, in
//! reverse order, of the plugins that ran (the failed one too: it may have done half).

use serde_json::{Map, Value};

use super::config::ConfList;
use super::exec::{self, Invocation, Op};
use super::NetworkError;

/// `a >= b` for dotted versions; unparsable parts count as 0.
pub fn version_at_least(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let (mut a, mut b) = (parse(a), parse(b));
    a.resize(3, 0);
    b.resize(3, 0);
    a >= b
}

/// One plugin's stdin: its own object plus the list's `name` and `cniVersion`, the
/// previous result, and of `runtime_config` the capabilities the plugin declares.
pub fn plugin_conf(
    list: &ConfList,
    plugin: &Value,
    prev: Option<&Value>,
    runtime_config: &Value,
) -> Value {
    let mut conf = plugin.as_object().cloned().unwrap_or_default();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    match prev {
        Some(p) if !p.is_null() => {
            conf.insert("prevResult".into(), p.clone());
        }
        _ => {}
    }
    let mut rc = Map::new();
    if let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) {
        for (cap, on) in caps {
            match runtime_config.get(cap) {
                Some(v) if on.as_bool() == Some(true) => {
                    rc.insert(cap.clone(), v.clone());
                }
                _ => {}
            }
        }
    }
    if !rc.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    Value::Object(conf)
}

fn kind(plugin: &Value) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// ADD through the list; the last plugin's result. Each plugin's result goes to
/// `progress` as soon as it is printed (the cache, for a DEL after the agent died
/// mid-chain). On failure everything is deleted again and the ADD's error returned
/// (with the rollback's, if that failed too).
pub fn add(
    list: &ConfList,
    inv: &Invocation<'_>,
    rc: &Value,
    progress: &mut dyn FnMut(&Value) -> Result<(), NetworkError>,
) -> Result<Value, NetworkError> {
    let mut prev: Option<Value> = None;
    for (i, plugin) in list.plugins.iter().enumerate() {
        let conf = plugin_conf(list, plugin, prev.as_ref(), rc);
        let err = match exec::run(kind(plugin), Op::Add, inv, &conf) {
            Ok(Value::Null) => NetworkError::Plugin {
                plugin: kind(plugin).to_string(),
                command: Op::Add.as_str(),
                message: "printed no result".into(),
            },
            Ok(r) => match progress(&r) {
                Ok(()) => {
                    prev = Some(r);
                    continue;
                }
                Err(e) => {
                    prev = Some(r);
                    e
                }
            },
            Err(e) => e,
        };
        let ran = match err {
            NetworkError::PluginMissing { .. } => i,
            _ => i + 1,
        };
        return Err(rollback(
            list,
            &list.plugins[..ran],
            inv,
            rc,
            prev.as_ref(),
            err,
        ));
    }
    prev.ok_or_else(|| NetworkError::Plugin {
        plugin: list.name.clone(),
        command: Op::Add.as_str(),
        message: "no plugins".into(),
    })
}

fn rollback(
    list: &ConfList,
    ran: &[Value],
    inv: &Invocation<'_>,
    rc: &Value,
    prev: Option<&Value>,
    err: NetworkError,
) -> NetworkError {
    match del_plugins(list, ran, inv, rc, prev) {
        Ok(()) => err,
        Err(del) => NetworkError::Rollback {
            add: Box::new(err),
            del: Box::new(del),
        },
    }
}

/// DEL through the list in reverse order, each plugin given the cached ADD result
/// (from 0.4.0 on). Every plugin runs even when one fails, so one broken plugin does
/// not leak what the others hold; the first error is returned.
pub fn del(
    list: &ConfList,
    inv: &Invocation<'_>,
    rc: &Value,
    cached: Option<&Value>,
) -> Result<(), NetworkError> {
    del_plugins(list, &list.plugins, inv, rc, cached)
}

fn del_plugins(
    list: &ConfList,
    plugins: &[Value],
    inv: &Invocation<'_>,
    rc: &Value,
    cached: Option<&Value>,
) -> Result<(), NetworkError> {
    let cached = cached.filter(|_| version_at_least(&list.cni_version, "0.4.0"));
    let mut first = None;
    for plugin in plugins.iter().rev() {
        let conf = plugin_conf(list, plugin, cached, rc);
        if let Err(e) = exec::run(kind(plugin), Op::Del, inv, &conf) {
            tracing::warn!(error = %e, "cni DEL");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// CHECK through the list in order with the cached result; skipped (Ok) below 0.4.0
/// or when the list says `disableCheck`.
pub fn check(
    list: &ConfList,
    inv: &Invocation<'_>,
    rc: &Value,
    cached: &Value,
) -> Result<(), NetworkError> {
    if list.disable_check || !version_at_least(&list.cni_version, "0.4.0") {
        return Ok(());
    }
    for plugin in &list.plugins {
        let conf = plugin_conf(list, plugin, Some(cached), rc);
        exec::run(kind(plugin), Op::Check, inv, &conf)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
