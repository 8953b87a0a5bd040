//! The crate as a graph of module files: reads `src/` along its `mod` declarations and
//! finds every path that names one of its modules (see tests/layering.rs for the rules).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub fn join(m: &[String]) -> String {
    m.join("::")
}

pub type ModPath = Vec<String>;

pub struct Crate {
    /// Each module that has its own file, and that file.
    pub files: BTreeMap<ModPath, PathBuf>,
    /// Names a module file brings in with `use` (re-exported or not: a child module sees
    /// both): name → the path it stands for, so `super::Name` counts as an import of the
    /// file that defines `Name`.
    aliases: BTreeMap<ModPath, BTreeMap<String, ModPath>>,
}

#[derive(Clone)]
pub struct Edge {
    pub from: ModPath,
    pub to: ModPath,
    /// The path as resolved (`crate::a::b`), for the message.
    pub path: String,
    pub file: PathBuf,
    pub line: usize,
}

impl Crate {
    pub fn read() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = BTreeMap::new();
        let mut todo = vec![(Vec::new(), root.join("src/lib.rs"))];
        while let Some((m, file)) = todo.pop() {
            let src = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // `src/a.rs` and `src/a/mod.rs` both keep children in `src/a/`.
            let dir = if m.is_empty() || file.file_name().is_some_and(|n| n == "mod.rs") {
                file.parent().unwrap().to_path_buf()
            } else {
                file.with_extension("")
            };
            for (name, path_attr) in mod_decls(&src) {
                let child = match path_attr {
                    Some(p) => file.parent().unwrap().join(p),
                    None => {
                        let flat = dir.join(format!("{name}.rs"));
                        if flat.exists() {
                            flat
                        } else {
                            dir.join(&name).join("mod.rs")
                        }
                    }
                };
                let mut cm = m.clone();
                cm.push(name);
                todo.push((cm, child));
            }
            files.insert(m, file);
        }
        let mut krate = Crate {
            files,
            aliases: BTreeMap::new(),
        };
        let mut aliases = BTreeMap::new();
        for (m, file) in &krate.files {
            let src = std::fs::read_to_string(file).unwrap();
            let mut map = BTreeMap::new();
            scan(&src, m, &krate.children(m), &mut |p| {
                if let (Some(name), true) = (&p.alias, p.in_module == *m) {
                    map.insert(name.clone(), p.resolved.clone());
                }
            });
            aliases.insert(m.clone(), map);
        }
        krate.aliases = aliases;
        krate
    }

    fn children(&self, m: &ModPath) -> BTreeSet<String> {
        self.files
            .keys()
            .filter(|c| c.len() == m.len() + 1 && c.starts_with(m))
            .map(|c| c.last().unwrap().clone())
            .collect()
    }

    /// The module file a resolved path lands in, following re-exports.
    fn owner(&self, path: &[String]) -> Option<ModPath> {
        let mut path = path.to_vec();
        for _ in 0..8 {
            let owner = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| !p.is_empty() && self.files.contains_key(p))?;
            let Some(next) = path.get(owner.len()) else {
                return Some(owner);
            };
            match self.aliases.get(&owner).and_then(|r| r.get(next)) {
                Some(target) if target.as_slice() != path.as_slice() => {
                    let mut p = target.clone();
                    p.extend_from_slice(&path[owner.len() + 1..]);
                    path = p;
                }
                _ => return Some(owner),
            }
        }
        None
    }

    pub fn edges(&self) -> Vec<Edge> {
        let mut out = Vec::new();
        for (m, file) in &self.files {
            let src = std::fs::read_to_string(file).unwrap();
            let rel = file
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap_or(file)
                .to_path_buf();
            scan(&src, m, &self.children(m), &mut |p| {
                if p.reexport && p.in_module == *m {
                    return;
                }
                if let Some(to) = self.owner(&p.resolved) {
                    out.push(Edge {
                        from: m.clone(),
                        to,
                        path: format!("crate::{}", join(&p.resolved)),
                        file: rel.clone(),
                        line: p.line,
                    });
                }
            });
        }
        out
    }
}

/// Whether the tokens just before `i` (after an optional `pub`) are `#[cfg(test)]`.
fn after_cfg_test(toks: &[Token], i: usize) -> bool {
    let mut end = i;
    if end >= 1 && toks[end - 1].tok == Tok::Ident("pub".into()) {
        end -= 1;
    }
    let want = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    end >= want.len()
        && toks[end - want.len()..end]
            .iter()
            .zip(&want)
            .all(|(t, w)| t.tok == *w)
}

/// `mod name;` declarations (not inline `mod name { … }`), with their `#[path]`. Modules
/// that exist only under `#[cfg(test)]` are left out: test code may import across its
/// module's files (fakes, fixtures) without making the code itself circular.
fn mod_decls(src: &str) -> Vec<(String, Option<String>)> {
    let toks = lex(src);
    let mut out = Vec::new();
    let mut path_attr = None;
    let mut test_only = false;
    for i in 0..toks.len() {
        let mut at = i;
        // `#[cfg(test)] #[path = "…"] mod x;`: look past the path attribute.
        if i >= 6 && toks[i - 1].tok == Tok::Punct(']') && toks[i - 6].tok == Tok::Punct('#') {
            at = i - 6;
        }
        if toks[i].tok == Tok::Ident("mod".into())
            && (after_cfg_test(&toks, i) || after_cfg_test(&toks, at))
        {
            test_only = true;
        }
        if let [Tok::Punct('#'), Tok::Punct('['), Tok::Ident(p), Tok::Punct('='), Tok::Str(s), Tok::Punct(']')] =
            toks[i..toks.len().min(i + 6)]
                .iter()
                .map(|t| &t.tok)
                .collect::<Vec<_>>()[..]
        {
            if p == "path" {
                path_attr = Some(s.clone());
            }
        }
        if let [Tok::Ident(kw), Tok::Ident(name), Tok::Punct(';')] = toks[i..toks.len().min(i + 3)]
            .iter()
            .map(|t| &t.tok)
            .collect::<Vec<_>>()[..]
        {
            if kw == "mod" {
                let path = path_attr.take();
                if !std::mem::take(&mut test_only) {
                    out.push((name.clone(), path));
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::` is one token, `:`.
    PathSep,
    Punct(char),
    Str(String),
}

struct Token {
    tok: Tok,
    line: usize,
}

/// A small Rust lexer: identifiers, `::`, punctuation and string literals; comments, char
/// literals, lifetimes and numbers are dropped.
fn lex(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let count = |s: &[char]| s.iter().filter(|&&ch| ch == '\n').count();
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let (start, mut depth) = (i, 0);
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += count(&c[start..i.min(c.len())]);
        } else if ch == '"' || ((ch == 'b' || ch == 'c') && next == Some('"')) {
            let start = i;
            i += if ch == '"' { 1 } else { 2 };
            let mut s = String::new();
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if i < c.len() {
                    s.push(c[i]);
                }
                i += 1;
            }
            i += 1;
            line += count(&c[start..i.min(c.len())]);
            out.push(Token {
                tok: Tok::Str(s),
                line,
            });
        } else if (ch == 'r' && matches!(next, Some('"') | Some('#')))
            || ((ch == 'b' || ch == 'c')
                && next == Some('r')
                && matches!(c.get(i + 2), Some('"') | Some('#')))
        {
            let start = i;
            i += if ch == 'r' { 1 } else { 2 };
            let mut hashes = 0;
            while c.get(i) == Some(&'#') {
                hashes += 1;
                i += 1;
            }
            if c.get(i) != Some(&'"') {
                // `r#ident`: a raw identifier.
                let s = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(c[s..i].iter().collect()),
                    line,
                });
                continue;
            }
            i += 1;
            let body = i;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#')) {
                    break;
                }
                i += 1;
            }
            let s: String = c[body..i.min(c.len())].iter().collect();
            i += 1 + hashes;
            line += count(&c[start..i.min(c.len())]);
            out.push(Token {
                tok: Tok::Str(s),
                line,
            });
        } else if ch == '\'' {
            // A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(c[s..i].iter().collect()),
                line,
            });
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                if c[i] == '.' && !c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                    break;
                }
                i += 1;
            }
        } else if ch == ':' && next == Some(':') {
            out.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

pub struct FoundPath {
    /// Absolute, without `crate`.
    pub resolved: ModPath,
    pub line: usize,
    /// A `pub use` (routing, not a dependency of the file's own code).
    pub reexport: bool,
    /// The name a `use` item binds (`x` for `use a::x`, `y` for `use a::x as y`); none for
    /// globs and paths in code.
    pub alias: Option<String>,
    /// The module (file module plus inline `mod` blocks) the path is written in.
    pub in_module: ModPath,
}

/// Calls `found` for every path in `src` that names this crate's modules.
pub fn scan(
    src: &str,
    file_module: &[String],
    children: &BTreeSet<String>,
    found: &mut dyn FnMut(FoundPath),
) {
    let toks = lex(src);
    let ident = |i: usize| match toks.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, t: Tok| toks.get(i).map(|x| &x.tok) == Some(&t);
    // Inline `mod x { … }` blocks: (name, brace depth at which it closes).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let module: ModPath = file_module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        match &toks[i].tok {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
                continue;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
                continue;
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(_), true, true) = (
                    ident(i + 1),
                    is(i + 2, Tok::Punct('{')),
                    after_cfg_test(&toks, i),
                ) {
                    // An inline test module: skipped whole (see `mod_decls`).
                    let mut d = 0usize;
                    let mut j = i + 2;
                    while j < toks.len() {
                        match toks[j].tok {
                            Tok::Punct('{') => d += 1,
                            Tok::Punct('}') => {
                                d -= 1;
                                if d == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    i = j + 1;
                    continue;
                }
                if let (Some(name), true) = (ident(i + 1), is(i + 2, Tok::Punct('{'))) {
                    inline.push((name.to_string(), depth + 1));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            Tok::Ident(kw) if kw == "use" => {
                // `pub use`, `pub(crate) use`, `pub(super) use`: a re-export.
                let public = (i >= 1 && ident(i - 1) == Some("pub"))
                    || (i >= 4 && ident(i - 4) == Some("pub") && is(i - 1, Tok::Punct(')')));
                let mut paths = Vec::new();
                let end = use_tree(&toks, i + 1, Vec::new(), &mut paths);
                for (p, line, alias) in paths {
                    if let Some(resolved) = resolve(&p, &module, file_module, children, true) {
                        found(FoundPath {
                            resolved,
                            line,
                            reexport: public,
                            alias,
                            in_module: module.clone(),
                        });
                    }
                }
                i = end;
                continue;
            }
            Tok::Ident(first) => {
                // A path in code starts where the previous token is not `::` or `.`.
                let prev_joins =
                    i >= 1 && matches!(toks[i - 1].tok, Tok::PathSep | Tok::Punct('.'));
                if !prev_joins && is(i + 1, Tok::PathSep) {
                    let is_start = matches!(first.as_str(), "crate" | "super" | "self")
                        || children.contains(first.as_str()) && inline.is_empty();
                    if is_start {
                        let mut p = vec![(first.clone(), toks[i].line)];
                        let mut j = i + 1;
                        while is(j, Tok::PathSep) {
                            match ident(j + 1) {
                                Some(s) => {
                                    p.push((s.to_string(), toks[j + 1].line));
                                    j += 2;
                                }
                                None => break,
                            }
                        }
                        let line = toks[i].line;
                        let segs: Vec<String> = p.into_iter().map(|(s, _)| s).collect();
                        if let Some(resolved) =
                            resolve(&segs, &module, file_module, children, false)
                        {
                            found(FoundPath {
                                resolved,
                                line,
                                reexport: false,
                                alias: None,
                                in_module: module.clone(),
                            });
                        }
                        i = j;
                        continue;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// Expands a use tree starting at `i` into full paths; returns the index after it.
/// A path of a `use` item, its line, and the name it binds.
type UsePath = (Vec<String>, usize, Option<String>);

fn use_tree(toks: &[Token], mut i: usize, prefix: Vec<String>, out: &mut Vec<UsePath>) -> usize {
    let mut path = prefix;
    if toks.get(i).map(|t| &t.tok) == Some(&Tok::PathSep) {
        i += 1;
    }
    loop {
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                let line = toks[i].line;
                i += 1;
                if toks.get(i).map(|t| &t.tok) == Some(&Tok::PathSep) {
                    i += 1;
                    continue;
                }
                if path.last().is_some_and(|l| l == "self") {
                    path.pop();
                }
                let mut alias = path.last().cloned();
                if let Some(Tok::Ident(kw)) = toks.get(i).map(|t| &t.tok) {
                    if kw == "as" {
                        if let Some(Tok::Ident(name)) = toks.get(i + 1).map(|t| &t.tok) {
                            alias = Some(name.clone());
                        }
                        i += 2;
                    }
                }
                out.push((path, line, alias));
                return i;
            }
            Some(Tok::Punct('*')) => {
                let line = toks[i].line;
                out.push((path, line, None));
                return i + 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.tok) {
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        None => return i,
                        _ => i = use_tree(toks, i, path.clone(), out),
                    }
                }
            }
            _ => return i,
        }
    }
}

/// Turns a written path into an absolute module path (without `crate`), or `None` when it
/// names something outside this crate.
fn resolve(
    p: &[String],
    module: &[String],
    file_module: &[String],
    children: &BTreeSet<String>,
    in_use: bool,
) -> Option<ModPath> {
    let first = p.first()?;
    let mut base: Vec<String>;
    let mut rest = p;
    match first.as_str() {
        "crate" => {
            base = Vec::new();
            rest = &p[1..];
        }
        "self" => {
            base = module.to_vec();
            rest = &p[1..];
        }
        "super" => {
            base = module.to_vec();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        // A `use` path or code path starting with a child module of this file.
        name if children.contains(name) && module == file_module => {
            base = module.to_vec();
            let _ = in_use;
        }
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}
