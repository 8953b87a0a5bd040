//! Finds the line and column of a field path (`spec.containers[1].image`) in a manifest's text.
//!
//! serde gives locations only for syntax errors. Manifests are almost always block-style YAML,
//! so this follows indentation: a key is searched only at the indentation of its parent
//! mapping's children, and `[n]` counts the `- ` items of a block sequence. Anything it cannot
//! follow (flow style, JSON arrays) makes it stop at the deepest part of the path it did find:
//! a location that is coarse but never points at the wrong field.

use std::fmt;

use super::FieldError;

/// One problem of a manifest, located where possible; displays as `line:col: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl Diagnostic {
    /// `error` located in the manifest `text`.
    pub fn for_field(text: &str, error: &FieldError) -> Self {
        let loc = locate(text, &error.field);
        Self {
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            field: (!error.field.is_empty()).then(|| error.field.clone()),
            message: error.message.clone(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(l) = self.line {
            write!(f, "{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
            sep = ": ";
        }
        if let Some(field) = &self.field {
            write!(f, "{sep}{field}")?;
            sep = ": ";
        }
        write!(f, "{sep}{}", self.message)
    }
}

/// 1-based (line, column) of `field` in `text`, or of its deepest located ancestor.
pub fn locate(text: &str, field: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = None;
    let mut at = Pos {
        cursor: 0,
        parent_col: None,
        item: None,
    };
    for seg in segments(field) {
        let next = match seg {
            Seg::Key(key) => find_key(&lines, &at, &key).map(|(line, col)| {
                (
                    (line, col),
                    Pos {
                        cursor: line + 1,
                        parent_col: Some(col),
                        item: None,
                    },
                )
            }),
            Seg::Index(n) => find_item(&lines, &at, n).map(|(line, dash, content)| {
                (
                    (line, content),
                    Pos {
                        cursor: line + 1,
                        parent_col: Some(dash),
                        item: Some((line, content)),
                    },
                )
            }),
        };
        match next {
            Some(((line, col), pos)) => {
                found = Some((line + 1, col + 1));
                at = pos;
            }
            None => break,
        }
    }
    found
}

struct Pos {
    /// First line to search.
    cursor: usize,
    /// Column of the parent key or dash: children are indented deeper.
    parent_col: Option<usize>,
    /// After `[n]`: the item's dash line and the column of its content (its first key).
    item: Option<(usize, usize)>,
}

#[derive(Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segments(field: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in field.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Seg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(inner) = rest.strip_prefix('[') {
                let Some(end) = inner.find(']') else { break };
                let idx = &inner[..end];
                // `limits[memory]` names a map key; `[2]` a list item.
                out.push(match idx.parse() {
                    Ok(n) => Seg::Index(n),
                    Err(_) => Seg::Key(idx.to_string()),
                });
                rest = &inner[end + 1..];
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank(line: &str) -> bool {
    let t = line.trim();
    // A lone `{` opens a pretty-printed JSON object: its keys are the children.
    t.is_empty() || t.starts_with('#') || t == "{"
}

fn is_key(content: &str, key: &str) -> bool {
    [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ]
    .iter()
    .any(|k| {
        content
            .strip_prefix(k.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    })
}

fn find_key(lines: &[&str], at: &Pos, key: &str) -> Option<(usize, usize)> {
    let mut child_col = None;
    let mut start = at.cursor;
    if let Some((line, col)) = at.item {
        if is_key(lines.get(line)?.get(col..)?, key) {
            return Some((line, col));
        }
        child_col = Some(col);
        start = line + 1;
    }
    for (i, line) in lines.iter().enumerate().skip(start) {
        if is_blank(line) {
            continue;
        }
        let ind = indent(line);
        if at.parent_col.is_some_and(|p| ind <= p) {
            return None;
        }
        let child = *child_col.get_or_insert(ind);
        if ind < child {
            return None;
        }
        if ind == child && is_key(&line[ind..], key) {
            return Some((i, ind));
        }
    }
    None
}

/// The `n`th item of the block sequence starting at `at.cursor`: (line, dash column, content
/// column).
fn find_item(lines: &[&str], at: &Pos, n: usize) -> Option<(usize, usize, usize)> {
    let mut dash_col = None;
    let mut seen = 0;
    for (i, line) in lines.iter().enumerate().skip(at.cursor) {
        if is_blank(line) {
            continue;
        }
        let ind = indent(line);
        let content = &line[ind..];
        let is_dash = content == "-" || content.starts_with("- ");
        let dash = match dash_col {
            None if is_dash && at.parent_col.is_none_or(|p| ind >= p) => *dash_col.insert(ind),
            None => return None,
            Some(d) => d,
        };
        if ind < dash || (ind == dash && !is_dash) {
            return None;
        }
        if ind == dash {
            if seen == n {
                let after = &content[1..];
                let pad = after.len() - after.trim_start_matches(' ').len();
                return Some((i, dash, ind + 1 + pad));
            }
            seen += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web   # comment
spec:
  volumes:
  - name: data
    hostPath: {path: /x}
  containers:
  - name: a
    image: busybox
    env:
    - name: X
      value: y
  - name: b

    image: busybox
    resources:
      limits:
        memory: 12Gx
";

    #[test]
    fn finds_nested_fields_and_items() {
        assert_eq!(locate(POD, "metadata.name"), Some((4, 3)));
        assert_eq!(locate(POD, "spec.containers[0].name"), Some((10, 5)));
        assert_eq!(locate(POD, "spec.containers[0].image"), Some((11, 5)));
        assert_eq!(locate(POD, "spec.containers[0].env[0].name"), Some((13, 7)));
        assert_eq!(locate(POD, "spec.containers[1].name"), Some((15, 5)));
        assert_eq!(locate(POD, "spec.containers[1].image"), Some((17, 5)));
        assert_eq!(
            locate(POD, "spec.containers[1].resources.limits[memory]"),
            Some((20, 9))
        );
        assert_eq!(locate(POD, "spec.volumes[0].name"), Some((7, 5)));
    }

    #[test]
    fn falls_back_to_the_deepest_known_ancestor() {
        // Flow style below hostPath: the path is known only down to hostPath.
        assert_eq!(locate(POD, "spec.volumes[0].hostPath.path"), Some((8, 5)));
        // No such item or key.
        assert_eq!(locate(POD, "spec.containers[5].name"), Some((9, 3)));
        assert_eq!(locate(POD, "spec.nothing"), Some((5, 1)));
        assert_eq!(locate(POD, "nothing"), None);
        assert_eq!(locate(POD, ""), None);
        // A key nested deeper is not mistaken for the one asked for.
        assert_eq!(locate("a:\n  b:\n    c: 1\n", "a.c"), Some((1, 1)));
    }

    #[test]
    fn json_keys() {
        let json = "{\n  \"kind\": \"Pod\",\n  \"spec\": {\n    \"containers\": [\n      {\"name\": \"a\"}\n    ]\n  }\n}\n";
        assert_eq!(locate(json, "spec"), Some((3, 3)));
        // JSON arrays have no dashes to count: the location stops at the array.
        assert_eq!(locate(json, "spec.containers[0].name"), Some((4, 5)));
    }

    #[test]
    fn garbage_does_not_panic() {
        for text in ["- \n-", "a:\n- b\n  - c", "\u{e9}:\n  \u{e9}: 1", "a: [\n"] {
            for field in ["a", "a[0]", "a[0].b", "\u{e9}.\u{e9}", "[", "a[", "a[]"] {
                let _ = locate(text, field);
            }
        }
    }
}
