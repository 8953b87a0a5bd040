//! A manifest's bytes to a JSON value and to typed objects, with errors that name the
//! file, the field and the line and column.

use std::path::Path;

use super::depth;
use super::{jsonpath, locate_or_start, FieldError, ManifestError};

/// The document as a generic value, and whether it was written as JSON. A document that
/// opens with `{` but is not JSON is YAML in flow style (`{apiVersion: v1, …}`), which the
/// kubelet reads as YAML too (`yaml.ToJSON`); its error is JSON's only when its first key
/// is quoted as JSON's are.
pub(super) fn parse_value(
    path: &Path,
    bytes: &[u8],
) -> Result<(serde_json::Value, bool), ManifestError> {
    let mut rest = bytes.iter().skip_while(|b| b.is_ascii_whitespace());
    if rest.next() == Some(&b'{') {
        match serde_json::from_slice(bytes) {
            Ok(value) => return Ok((value, true)),
            Err(e) if rest.find(|b| !b.is_ascii_whitespace()) == Some(&b'"') => {
                return Err(json_error(path, &e))
            }
            Err(_) => {}
        }
    }
    let value = if depth::too_deep(bytes, depth::MAX_FLOW_DEPTH) {
        return Err(ManifestError::Invalid {
            path: path.to_path_buf(),
            errors: vec![FieldError::new(
                "",
                format!("nested deeper than {} levels", depth::MAX_FLOW_DEPTH),
            )],
        });
    } else {
        serde_yaml::from_slice(bytes).map_err(|e| yaml_error(path, &e))?
    };
    Ok((value, false))
}

/// The typed document of `bytes` (already parsed into `value`), errors named by field.
pub(super) fn typed<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    value: &serde_json::Value,
    is_json: bool,
) -> Result<T, ManifestError> {
    if is_json {
        serde_json::from_slice(bytes).map_err(|e| typed_error(path, bytes, None, &e))
    } else {
        let json = serde_json::to_vec(value).map_err(|e| json_error(path, &e))?;
        serde_json::from_slice(&json).map_err(|e| typed_error(path, &json, Some(bytes), &e))
    }
}

/// A typed decoding error of `json`, named by field. `yaml`: the text the JSON was written
/// from, where the field is located instead (the JSON's positions mean nothing to the user).
pub(super) fn typed_error(
    path: &Path,
    json: &[u8],
    yaml: Option<&[u8]>,
    e: &serde_json::Error,
) -> ManifestError {
    if e.line() == 0 {
        return json_error(path, e);
    }
    let at = jsonpath::offset(json, e.line(), e.column());
    let field = jsonpath::path_at(json, at).filter(|f| !f.is_empty());
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&suffix).unwrap_or(&message);
    let (line, column) = match yaml {
        None => (Some(e.line()), Some(e.column())),
        Some(text) => {
            let loc = locate_or_start(
                &String::from_utf8_lossy(text),
                field.as_deref().unwrap_or(""),
            );
            (Some(loc.0), Some(loc.1))
        }
    };
    ManifestError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        message: match &field {
            Some(f) => format!("{f}: {message}"),
            None => message.to_string(),
        },
        field,
    }
}

pub(super) fn yaml_error(path: &Path, e: &serde_yaml::Error) -> ManifestError {
    let loc = e.location();
    let (line, column) = (
        loc.as_ref().map(|l| l.line()),
        loc.as_ref().map(|l| l.column()),
    );
    syntax_error(path, e.to_string(), line, column)
}

pub(super) fn json_error(path: &Path, e: &serde_json::Error) -> ManifestError {
    let (line, column) = if e.line() == 0 {
        (None, None)
    } else {
        (Some(e.line()), Some(e.column()))
    };
    syntax_error(path, e.to_string(), line, column)
}

pub(super) fn syntax_error(
    path: &Path,
    mut message: String,
    line: Option<usize>,
    column: Option<usize>,
) -> ManifestError {
    // serde puts the location into its messages; we report it in front, compiler-style.
    if let (Some(l), Some(c)) = (line, column) {
        message = message.replacen(&format!(" at line {l} column {c}"), "", 1);
    }
    // serde_yaml prefixes the field path (`spec.containers[0]: missing field ...`).
    let mut field = None;
    if let Some((prefix, _)) = message.split_once(": ") {
        let looks_like_path = !prefix.is_empty()
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._[]-".contains(c));
        if looks_like_path {
            field = Some(prefix.to_string());
        }
    }
    ManifestError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        field,
        message,
    }
}
