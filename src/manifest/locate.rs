//! Finds the line and column of a field path (`spec.containers[1].image`) in a manifest's text.
//!
//! serde gives locations only for syntax errors. Block-style YAML is followed by indentation:
//! a key is searched only at the indentation of its parent mapping's children, and `[n]`
//! counts the `- ` items of a block sequence. A value in flow style (`{…}`, `[…]`, on one
//! line or many), and a manifest that is one (JSON), is followed by [`super::flow`]. Anything
//! it cannot follow makes it stop at the deepest part of the path it did find: a location
//! that is coarse but never points at the wrong field.

use std::fmt;

use super::flow::{self, Seg};
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
    /// `error` located in the manifest `text`: at its field, the deepest part of it found,
    /// or the document's start (an error about the manifest as a whole, a missing field).
    pub fn for_field(text: &str, error: &FieldError) -> Self {
        let (line, column) = locate_or_start(text, &error.field);
        Self {
            line: Some(line),
            column: Some(column),
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

/// [`locate`], or where the document's content starts when nothing of `field` is found.
pub fn locate_or_start(text: &str, field: &str) -> (usize, usize) {
    locate(text, field).unwrap_or_else(|| {
        let at = flow::skip_ws(text.as_bytes(), 0);
        // `---` opens the document: its content is what follows.
        let at = match text.get(at..).and_then(|t| t.strip_prefix("---")) {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                flow::skip_ws(text.as_bytes(), at + 3)
            }
            _ => at,
        };
        if at >= text.len() {
            (1, 1)
        } else {
            flow::line_col(text, at)
        }
    })
}

/// 1-based (line, column) of `field` in `text`, or of its deepest located ancestor.
pub fn locate(text: &str, field: &str) -> Option<(usize, usize)> {
    let segs = segments(field);
    let first = flow::skip_ws(text.as_bytes(), 0);
    if matches!(text.as_bytes().get(first), Some(b'{' | b'[')) {
        return flow::walk(text, first, &segs).map(|(o, _)| flow::line_col(text, o));
    }
    let lines: Vec<&str> = text.lines().collect();
    let starts = line_starts(text);
    let mut found = None;
    let mut at = Pos {
        cursor: 0,
        parent_col: None,
        item: None,
    };
    // The byte offset of the last found part's value when it is in flow style.
    let mut flow_at = None;
    for (i, seg) in segs.iter().enumerate() {
        if let Some(offset) = flow_at {
            if let Some((o, _)) = flow::walk(text, offset, &segs[i..]) {
                found = Some(flow::line_col(text, o));
            }
            break;
        }
        let next = match seg {
            Seg::Key(key) => find_key(&lines, &at, key).map(|(line, col)| {
                (
                    (line, col),
                    Pos {
                        cursor: line + 1,
                        parent_col: Some(col),
                        item: None,
                    },
                )
            }),
            Seg::Index(n) => find_item(&lines, &at, *n).map(|(line, dash, content)| {
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
                flow_at = flow_value(lines[line], col, seg).map(|c| starts[line] + c);
                at = pos;
            }
            None => break,
        }
    }
    found
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// The column where the value of the part `seg` found at `col` of `line` starts, when it
/// is a flow collection: after `key:`, or an item's content itself.
fn flow_value(line: &str, col: usize, seg: &Seg) -> Option<usize> {
    let content = line.get(col..)?;
    let value = match seg {
        Seg::Index(_) => 0,
        Seg::Key(key) => {
            let prefix = key_prefixes(key)
                .into_iter()
                .find(|p| content.starts_with(p.as_str()))?;
            let rest = &content[prefix.len()..];
            prefix.len() + rest.len() - rest.trim_start().len()
        }
    };
    content[value..]
        .starts_with(['{', '['])
        .then_some(col + value)
}

fn key_prefixes(key: &str) -> [String; 3] {
    [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ]
}

struct Pos {
    /// First line to search.
    cursor: usize,
    /// Column of the parent key or dash: children are indented deeper.
    parent_col: Option<usize>,
    /// After `[n]`: the item's dash line and the column of its content (its first key).
    item: Option<(usize, usize)>,
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
    key_prefixes(key).iter().any(|k| {
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
        // Flow style below hostPath is followed too.
        assert_eq!(locate(POD, "spec.volumes[0].hostPath.path"), Some((8, 16)));
        // A key the flow mapping lacks: the mapping's own key.
        assert_eq!(locate(POD, "spec.volumes[0].hostPath.type"), Some((8, 5)));
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
        assert_eq!(locate(json, "spec.containers[0].name"), Some((5, 8)));
        // Minified, on one line.
        let json =
            r#"{"kind":"Pod","spec":{"containers":[{"name":"a"},{"name":"b","stdin":true}]}}"#;
        assert_eq!(locate(json, "spec.containers[1].stdin"), Some((1, 62)));
        assert_eq!(locate(json, "spec.containers[1]"), Some((1, 50)));
    }

    #[test]
    fn flow_style_yaml_on_one_line_or_many() {
        let text = "\
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {a: 'x, y', b: \"}\"}}
spec:
  securityContext: {runAsUser: 1, seLinuxChangePolicy: Recursive}
  containers:
  - {name: a, image: 'it''s', args: [\"[\", '{', x], stdin: true}
  - name: b
    ports: [{containerPort: 80}, {containerPort: 81,
      hostIP: x}]   # comment, with [brackets]
";
        assert_eq!(locate(text, "metadata.name"), Some((3, 12)));
        assert_eq!(locate(text, "metadata.labels[b]"), Some((3, 43)));
        assert_eq!(
            locate(text, "spec.securityContext.seLinuxChangePolicy"),
            Some((5, 35))
        );
        assert_eq!(locate(text, "spec.containers[0].stdin"), Some((7, 52)));
        assert_eq!(locate(text, "spec.containers[0].args[2]"), Some((7, 48)));
        assert_eq!(
            locate(text, "spec.containers[1].ports[1].hostIP"),
            Some((10, 7))
        );
        // Not there: the deepest part found.
        assert_eq!(locate(text, "spec.containers[0].tty"), Some((7, 5)));
        let all_flow = "{apiVersion: v1, kind: Pod,\n spec: {containers: [{name: a, tty: true}]}}";
        assert_eq!(locate(all_flow, "spec.containers[0].tty"), Some((2, 32)));
    }

    #[test]
    fn garbage_does_not_panic() {
        for text in [
            "- \n-",
            "a:\n- b\n  - c",
            "\u{e9}:\n  \u{e9}: 1",
            "a: [\n",
            "{a: {\"\\,",
            "a: {b: [1, {c: '",
            "[{",
            "{\u{e9}: [\u{e9}, {a: #\n",
        ] {
            for field in ["a", "a[0]", "a[0].b", "\u{e9}.\u{e9}", "[", "a[", "a[]"] {
                let _ = locate(text, field);
            }
        }
    }
}
