//! The field path (`spec.containers[0].args[1]`) at a position of a JSON text, for typed
//! decoding errors. Manifests decode into a Pod through serde_json only (YAML is first
//! read as an untyped value and written as JSON): a typed deserializer is all of the Pod
//! type tree in code, and serde_yaml's was ~660 KiB of the agent's resident text
//! (BENCHMARKS.md row 4a). serde_json reports where it failed but not the field; this
//! recovers it by scanning the text up to there.

enum Frame {
    /// The last key read (none right after `{` or `,`).
    Object(Option<String>),
    /// The index of the current element, and whether that element has begun.
    Array(usize, bool),
}

/// The path of the value that ends at or contains byte `offset`; `None` when the scan does
/// not reach it (invalid JSON before it).
pub fn path_at(json: &[u8], offset: usize) -> Option<String> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let end = offset.min(json.len());
    while i < end {
        match json[i] {
            b'{' => {
                begin_value(&mut stack);
                stack.push(Frame::Object(None));
            }
            b'[' => {
                begin_value(&mut stack);
                stack.push(Frame::Array(0, false));
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(n, begun)) => {
                    *n += 1;
                    *begun = false;
                }
                Some(Frame::Object(key)) => *key = None,
                None => return None,
            },
            b'"' => {
                let (s, next) = string(json, i)?;
                i = next;
                match stack.last_mut() {
                    // A key: the next string of an object that has no key yet.
                    Some(Frame::Object(key @ None)) => *key = Some(s),
                    _ => begin_value(&mut stack),
                }
                continue;
            }
            b' ' | b'\t' | b'\n' | b'\r' | b':' => {}
            _ => {
                // A number or literal: runs until a delimiter.
                while i < json.len() && !b",]} \t\r\n".contains(&json[i]) {
                    i += 1;
                }
                begin_value(&mut stack);
                continue;
            }
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Array(idx, true) => path.push_str(&format!("[{idx}]")),
            Frame::Object(None) | Frame::Array(_, false) => {}
        }
    }
    Some(path)
}

fn begin_value(stack: &mut [Frame]) {
    if let Some(Frame::Array(_, begun)) = stack.last_mut() {
        *begun = true;
    }
}

/// The string starting at the quote `at` (escapes decoded only as far as a key needs),
/// and the index after its closing quote.
fn string(json: &[u8], at: usize) -> Option<(String, usize)> {
    let mut out = Vec::new();
    let mut i = at + 1;
    while i < json.len() {
        match json[i] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), i + 1)),
            b'\\' => {
                out.push(*json.get(i + 1)?);
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// The byte offset of 1-based `line` and `column`, as serde_json reports them.
pub fn offset(json: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match json[start..].iter().position(|&b| b == b'\n') {
            Some(n) => start += n + 1,
            None => return json.len(),
        }
    }
    (start + column).min(json.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    /// The path serde_json's own error position leads to.
    fn path_of_error(json: &str) -> (String, String) {
        let e = serde_json::from_str::<Pod>(json).unwrap_err();
        let msg = e.to_string();
        let at = offset(json.as_bytes(), e.line(), e.column());
        let path = path_at(json.as_bytes(), at);
        (path.unwrap_or_else(|| format!("no path at {at}")), msg)
    }

    #[test]
    fn paths_of_type_errors() {
        let cases = [
            (
                r#"{"spec":{"containers":[{"name":"a","args":["-c",true]}]}}"#,
                "spec.containers[0].args[1]",
            ),
            (
                r#"{"spec":{"containers":[{"name":"a"},{"name":"b","ports":[{"containerPort":"x"}]}]}}"#,
                "spec.containers[1].ports[0].containerPort",
            ),
            (
                r#"{"spec":{"containers":[{"name":"a"}],"volumes":{"name":"v"}}}"#,
                "spec.volumes",
            ),
            (
                r#"{"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":[1]}}}]}}"#,
                "spec.containers[0].resources.limits.cpu",
            ),
            (
                r#"{"metadata":{"labels":{"a":1}},"spec":{"containers":[]}}"#,
                "metadata.labels.a",
            ),
            (r#"{"spec":{"restartPolicy":{}}}"#, "spec.restartPolicy"),
            (
                "{\n  \"spec\": {\n    \"containers\": [\n      {\"name\": \"a\", \"tty\": \"yes\"}\n    ]\n  }\n}",
                "spec.containers[0].tty",
            ),
            (
                r#"{"spec":{"containers":[{"name":"a\"b","env":[{"name":"x","value":2}]}]}}"#,
                "spec.containers[0].env[0].value",
            ),
        ];
        for (json, want) in cases {
            let (path, msg) = path_of_error(json);
            assert_eq!(path, want, "{json}: {msg}");
        }
    }

    #[test]
    fn unreadable_text_gives_no_path() {
        assert_eq!(path_at(br#"{"a":"unterminated"#, 100), None);
    }
}
