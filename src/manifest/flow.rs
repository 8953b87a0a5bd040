//! Follows a field path through flow-style YAML (`{name: a, image: b}`, `[x, y]`) and JSON,
//! which may span lines: what [`super::locate`] hands over to when a value is a flow
//! collection, or when the whole manifest is one. Works on byte offsets into the text;
//! anything it cannot follow ends the walk at the deepest part found.

/// One part of a field path: `name` or `[2]`.
#[derive(Debug, PartialEq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// The offset of the deepest part of `segs` found below the flow collection at `start`
/// (a `{` or `[`), with how many segments it matched; `None` when not even the first was.
pub(super) fn walk(text: &str, start: usize, segs: &[Seg]) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut at = start;
    let mut found = None;
    for (i, seg) in segs.iter().enumerate() {
        let next = match (seg, b.get(at)) {
            (Seg::Key(k), Some(b'{')) => find_key(b, at, k),
            (Seg::Index(n), Some(b'[')) => find_item(b, at, *n),
            _ => None,
        };
        let Some((here, value)) = next else { break };
        found = Some((here, i + 1));
        at = value;
    }
    found
}

/// Skips blanks, line breaks and comments.
pub(super) fn skip_ws(b: &[u8], mut at: usize) -> usize {
    while let Some(&c) = b.get(at) {
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => at += 1,
            b'#' if at == 0 || b[at - 1].is_ascii_whitespace() => {
                while b.get(at).is_some_and(|c| *c != b'\n') {
                    at += 1;
                }
            }
            _ => break,
        }
    }
    at
}

/// The end of the quoted string starting at `at`, past its closing quote.
fn quoted_end(b: &[u8], at: usize) -> usize {
    let q = b[at];
    let mut i = at + 1;
    while let Some(&c) = b.get(i) {
        if q == b'"' && c == b'\\' {
            i += 2;
            continue;
        }
        if c == q {
            // '' is an escaped quote in single-quoted YAML.
            if q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// The end of the plain scalar at `at`: a flow indicator, or `: `.
fn plain_end(b: &[u8], at: usize) -> usize {
    let mut i = at;
    while let Some(&c) = b.get(i) {
        match c {
            b',' | b'[' | b']' | b'{' | b'}' | b'\n' => break,
            b':' if b
                .get(i + 1)
                .is_none_or(|n| n.is_ascii_whitespace() || b",[]{}".contains(n)) =>
            {
                break
            }
            b'#' if i > at && b[i - 1].is_ascii_whitespace() => break,
            _ => i += 1,
        }
    }
    i
}

/// The end of the value (scalar or collection) at `at`.
fn value_end(b: &[u8], at: usize) -> usize {
    match b.get(at) {
        Some(b'"' | b'\'') => quoted_end(b, at),
        Some(&open @ (b'{' | b'[')) => {
            let close = if open == b'{' { b'}' } else { b']' };
            let mut i = at + 1;
            loop {
                i = skip_ws(b, i);
                match b.get(i) {
                    None => return b.len(),
                    Some(c) if *c == close => return i + 1,
                    Some(b',' | b':') => i += 1,
                    Some(_) => i = value_end(b, i).max(i + 1),
                }
            }
        }
        _ => plain_end(b, at),
    }
}

/// The text of the scalar key at `at`, unquoted (escapes kept), and its end.
fn key_at(b: &[u8], at: usize) -> (String, usize) {
    let end = value_end(b, at);
    let raw = String::from_utf8_lossy(&b[at..end.min(b.len())]);
    let raw = raw.trim_end();
    let key = match raw.as_bytes().first() {
        Some(b'"' | b'\'') if raw.len() >= 2 => raw[1..raw.len() - 1].to_string(),
        _ => raw.to_string(),
    };
    (key, end)
}

/// In the flow mapping at `open`: (offset of `key`, offset of its value).
fn find_key(b: &[u8], open: usize, key: &str) -> Option<(usize, usize)> {
    let mut i = open + 1;
    loop {
        i = skip_ws(b, i);
        match b.get(i)? {
            b'}' => return None,
            b',' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let (k, end) = key_at(b, i);
        let key_pos = i;
        i = skip_ws(b, end);
        if b.get(i) != Some(&b':') {
            // A key without a value (`{a, b}`): nothing below it.
            if k == key {
                return Some((key_pos, i));
            }
            continue;
        }
        let value = skip_ws(b, i + 1);
        if k == key {
            return Some((key_pos, value));
        }
        i = value_end(b, value).max(value + 1).min(b.len());
    }
}

/// In the flow sequence at `open`: the offset of item `n` (twice: it is its own value).
fn find_item(b: &[u8], open: usize, n: usize) -> Option<(usize, usize)> {
    let mut i = open + 1;
    let mut seen = 0;
    loop {
        i = skip_ws(b, i);
        match b.get(i)? {
            b']' => return None,
            b',' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if seen == n {
            return Some((i, i));
        }
        seen += 1;
        i = value_end(b, i).max(i + 1).min(b.len());
    }
}

/// 1-based (line, column) of byte `offset` in `text`; the column counts characters.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
