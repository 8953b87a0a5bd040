//! A cheap bound on YAML flow nesting (`[[[[…`, `{{{{…`), checked before the YAML parser
//! runs. libyaml's scanner (behind serde_yaml) does work proportional to the flow depth for
//! every token, so a 10 MiB document of open brackets cost the agent minutes of CPU on every
//! poll of a `--manifest-url` (found by tests/drills_hostile.rs: 40,000 levels took 10 s in
//! a debug build, 200,000 never finished), while serde_yaml only applies its recursion limit
//! (128) after the whole document was scanned.

/// Far above serde_yaml's own limit, so no document it accepts is refused here.
pub const MAX_FLOW_DEPTH: usize = 1000;

/// True when the flow collections of `yaml` nest deeper than `limit`. Quoted scalars and
/// comments are skipped as YAML reads them (a quote opens a scalar only where a token
/// starts); brackets inside block scalars are counted, which can only over-count.
pub fn too_deep(yaml: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    let starts_token = |i: usize| {
        i == 0
            || matches!(
                yaml[i - 1],
                b' ' | b'\t' | b'\n' | b'\r' | b'[' | b'{' | b',' | b':' | b'-' | b'?'
            )
    };
    while i < yaml.len() {
        match yaml[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' if starts_token(i) => {
                i += 1;
                while i < yaml.len() && yaml[i] != b'"' {
                    i += if yaml[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'\'' if starts_token(i) => {
                i += 1;
                while i < yaml.len() && yaml[i] != b'\'' {
                    i += 1;
                }
            }
            b'#' if i == 0 || matches!(yaml[i - 1], b' ' | b'\t' | b'\n' | b'\r') => {
                while i < yaml.len() && yaml[i] != b'\n' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_flow_nesting_outside_quotes_and_comments() {
        assert!(!too_deep(b"a: [[[]]]", 3));
        assert!(too_deep(b"a: [[[[]]]]", 3));
        assert!(too_deep(b"a: {b: [{c: [1]}]}", 3));
        assert!(!too_deep(b"a: \"[[[[[\" # {{{{{{\nb: '[[[[[[[['", 1));
        assert!(!too_deep(b"a: \"\\\"[[[[[\"", 0));
        // A quote inside a plain word opens nothing: the brackets after it count.
        assert!(too_deep(b"a: [it's, [[[x]]]]", 3));
        let bomb = format!("a: {}", "[".repeat(200_000));
        let t = std::time::Instant::now();
        assert!(too_deep(bomb.as_bytes(), MAX_FLOW_DEPTH));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }
}
