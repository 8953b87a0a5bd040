//! Fields of a manifest that no v1 Pod field takes: typos such as `imagePullPolcy`.
//!
//! serde drops unknown keys silently, so the raw document is compared with the typed pod
//! serialized back: a key present in the raw document and absent from the round trip was not
//! understood. Keys whose value is `null` are skipped (the round trip omits them too, and
//! generated manifests carry `creationTimestamp: null`).

use serde_json::Value;

use super::FieldError;

pub const UNKNOWN_FIELD: &str = "unknown field (not a field of a v1 Pod; a typo?)";

/// Every key of `raw` that `typed` (the same document after a typed round trip) lacks, as
/// field paths like `spec.containers[0].imagePullPolcy`.
pub fn unknown_fields(raw: &Value, typed: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    walk(raw, typed, "", &mut out);
    out
}

fn walk(raw: &Value, typed: &Value, path: &str, out: &mut Vec<FieldError>) {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (key, value) in r {
                if value.is_null() {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match t.get(key) {
                    Some(tv) => walk(value, tv, &child, out),
                    None => out.push(FieldError::new(child, UNKNOWN_FIELD)),
                }
            }
        }
        (Value::Array(r), Value::Array(t)) => {
            for (i, (rv, tv)) in r.iter().zip(t).enumerate() {
                walk(rv, tv, &format!("{path}[{i}]"), out);
            }
        }
        // Scalars, and maps typed as scalars (IntOrString, Quantity): nothing below them.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_raw_only_keys_with_paths() {
        let raw = json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "imagePullPolcy": "x"}],
            "typo": 1, "empty": null}});
        let typed = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let got: Vec<String> = unknown_fields(&raw, &typed)
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(got, ["spec.containers[1].imagePullPolcy", "spec.typo"]);
    }
}
