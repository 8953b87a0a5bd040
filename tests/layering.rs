//! Every import points down one layer order; no circles between modules or between the
//! files of one module. This test is the single home of the layer table; ARCHITECTURE.md
//! mirrors it.
//!
//! It reads the crate from `src/lib.rs` along its `mod` declarations (honouring
//! `#[path]`), strips comments and string literals, and collects every path that names a
//! module of this crate: `use crate::…`, `crate::…` in code, `super::…`/`self::…`, and a
//! path that starts with a child module's name. Each is resolved to the file (module) that
//! defines it. Two rules:
//!
//! 1. Between top-level modules: an import must point to a strictly lower layer of
//!    [`LAYERS`] (a module in the same layer is a peer, not a dependency).
//! 2. Between the files of one top-level module: no circle. A `pub use` line is routing,
//!    not a dependency of its file; a path through a name some file brought in with `use`
//!    (`super::Name`) counts as an import of the file that defines `Name`.
//!
//! Exceptions still open are listed in [`KNOWN_UPWARD`] and [`KNOWN_PARENT_CIRCLES`], each
//! with its TODO; an entry that no longer matches fails the test. No root: it reads
//! sources only, in well under a second.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer order, top first. A module may import only modules of a later (lower) layer.
/// Keep in sync with ARCHITECTURE.md ("Layers").
const LAYERS: &[&[&str]] = &[
    // the binary's subcommands; `cli::run` wires the agent
    &["cli"],
    // the agent's two faces: the diff of desired pods vs workers, and the HTTP API
    &["manager", "api"],
    // one task per pod: its life from image pull to the last container's exit
    &["worker"],
    // what a worker uses for one step of a pod
    &["image", "bundle", "probe"],
    // the pod's shared namespaces and /etc files (the bundle points containers at them)
    &["sandbox"],
    // counters recorded by the layers above, rendered from the two below at scrape time
    &["metrics"],
    // where pods come from (read by the manager); what the node reports
    &["source", "status"],
    // containers through hostlet-monitor and libcontainer
    &["runtime"],
    // the agent's settings
    &["config"],
    // pod cgroups, QoS and node allocatable
    &["cgroups"],
    // the pod spec, its validation and quantities; the on-disk layout and records
    &["manifest", "state"],
    // leaf utilities
    &["logs", "node", "tls", "heap"],
];

/// Edges that still point up, each with the issue that removes it. Empty is the goal; an
/// entry that no longer matches an import fails the test, so the list only shrinks.
const KNOWN_UPWARD: &[(&str, &str, &str)] = &[(
    "config",
    "worker",
    "TODO(issue 16): BackoffPolicy moves below config with the worker's rewrite",
)];

/// Modules whose parent file (`mod.rs`/`x.rs`) is still both the vocabulary its files
/// import (an error type, shared structs) and the code that calls them: their child →
/// parent imports are left out of the circle check (circles between sibling files are
/// not). An entry that no longer hides a circle fails the test, so the list only shrinks.
const KNOWN_PARENT_CIRCLES: &[(&str, &str)] = &[
    (
        "bundle",
        "TODO(issue 16): BundleError lives in bundle/mod.rs",
    ),
    (
        "cli",
        "TODO(issue 16): run.rs and version.rs read `Cli::command()`",
    ),
    ("image", "TODO(issue 16): ImageError lives in image/mod.rs"),
    (
        "manifest",
        "TODO(issue 16): validate.rs helpers used by validate/*.rs",
    ),
    (
        "sandbox",
        "TODO(issue 16): PodFiles lives in sandbox/mod.rs",
    ),
    (
        "source",
        "TODO(issue 16): Snapshot, ProblemKind live in source/mod.rs",
    ),
    (
        "worker",
        "TODO(issue 16): Deps, PodCtx live in worker/mod.rs",
    ),
];

#[test]
fn imports_point_down_the_layer_order() {
    let krate = Crate::read();
    let rank = layer_ranks();
    let mut problems = Vec::new();
    for m in krate.files.keys() {
        let Some(top) = m.first() else { continue };
        if !rank.contains_key(top.as_str()) {
            problems.push(format!(
                "src/lib.rs: module `{top}` is not in the layer table (tests/layering.rs LAYERS); add it to the layer it belongs to, and to ARCHITECTURE.md"
            ));
        }
    }
    let mut known_used = BTreeSet::new();
    for e in krate.edges() {
        let (from, to) = (e.from[0].as_str(), e.to[0].as_str());
        if from == to {
            continue;
        }
        let (Some(&rf), Some(&rt)) = (rank.get(from), rank.get(to)) else {
            continue;
        };
        if rt > rf {
            continue;
        }
        if let Some(k) = KNOWN_UPWARD.iter().find(|k| k.0 == from && k.1 == to) {
            known_used.insert(*k);
            continue;
        }
        let how = if rt == rf {
            "sideways (same layer)"
        } else {
            "upward"
        };
        problems.push(format!(
            "{}:{}: `{}` imports `{}` ({how}: `{from}` is in layer {rf}, `{to}` in layer {rt}); rule: a module imports only modules of a lower layer (tests/layering.rs LAYERS, ARCHITECTURE.md)",
            e.file.display(),
            e.line,
            join(&e.from),
            e.path,
        ));
    }
    for k in KNOWN_UPWARD {
        if !known_used.contains(k) {
            problems.push(format!(
                "tests/layering.rs: KNOWN_UPWARD lists `{}` -> `{}`, which no longer exists; remove the entry",
                k.0, k.1
            ));
        }
    }
    report(problems);
}

#[test]
fn files_of_one_module_form_no_circle() {
    let krate = Crate::read();
    let mut graph: BTreeMap<Vec<String>, BTreeMap<Vec<String>, Edge>> = BTreeMap::new();
    // Child → parent edges of the modules in KNOWN_PARENT_CIRCLES, kept aside.
    let mut hidden: BTreeMap<String, Vec<Edge>> = BTreeMap::new();
    for e in krate.edges() {
        if e.from[0] == e.to[0] && e.from != e.to {
            let known = KNOWN_PARENT_CIRCLES.iter().any(|k| k.0 == e.from[0]);
            if known && e.from.starts_with(&e.to) {
                hidden.entry(e.from[0].clone()).or_default().push(e);
                continue;
            }
            graph
                .entry(e.from.clone())
                .or_default()
                .entry(e.to.clone())
                .or_insert(e);
        }
    }
    let mut problems = Vec::new();
    for (module, why) in KNOWN_PARENT_CIRCLES {
        // Still needed only if putting its child → parent edges back closes a circle.
        let mut full = graph.clone();
        for e in hidden.get(*module).into_iter().flatten() {
            full.entry(e.from.clone())
                .or_default()
                .entry(e.to.clone())
                .or_insert_with(|| e.clone());
        }
        if !cycles(&full).iter().any(|c| c[0][0] == *module) {
            problems.push(format!(
                "tests/layering.rs: KNOWN_PARENT_CIRCLES lists `{module}` ({why}), whose files no longer form a circle; remove the entry"
            ));
        }
    }
    for cycle in cycles(&graph) {
        let mut lines = Vec::new();
        for (i, m) in cycle.iter().enumerate() {
            let next = &cycle[(i + 1) % cycle.len()];
            let e = &graph[m][next];
            lines.push(format!(
                "  {}:{}: `{}` imports `{}`",
                e.file.display(),
                e.line,
                join(&e.from),
                e.path
            ));
        }
        problems.push(format!(
            "circle between files of `{}`: {} -> {}; rule: the files of one module import one way (move the shared item down into its own file)\n{}",
            cycle[0][0],
            cycle.iter().map(|m| join(m)).collect::<Vec<_>>().join(" -> "),
            join(&cycle[0]),
            lines.join("\n")
        ));
    }
    report(problems);
}

/// The checker itself: a path it must see, and one it must not.
#[test]
fn the_scanner_sees_paths_in_code_and_use_trees_only() {
    let src = r#"
        //! crate::doc_only::Thing
        use crate::{alpha::A, beta::{self, gamma::G}};
        use super::sibling;
        fn f() { let s = "crate::in_string"; crate::delta::call(); x::<crate::eps::T>(); }
        pub use child::Thing;
        use crate::zeta::Long as Short;
        mod inner { use super::*; fn g() { super::super::up::h(); } }
    "#;
    let mut paths = Vec::new();
    let children = BTreeSet::from(["child".to_string()]);
    scan(src, &["m".into(), "n".into()], &children, &mut |p| {
        paths.push((join(&p.resolved), p.reexport, p.alias))
    });
    let got: Vec<_> = paths
        .iter()
        .map(|(p, r, a)| {
            let r = if *r { " (re-export)" } else { "" };
            let a = a.as_ref().map(|a| format!(" as {a}")).unwrap_or_default();
            format!("{p}{r}{a}")
        })
        .collect();
    assert_eq!(
        got,
        [
            "alpha::A as A",
            "beta as beta",
            "beta::gamma::G as G",
            "m::sibling as sibling",
            "delta::call",
            "eps::T",
            "m::n::child::Thing (re-export) as Thing",
            "zeta::Long as Short",
            "m::n",
            "m::up::h",
        ],
    );
}

fn layer_ranks() -> BTreeMap<&'static str, usize> {
    let mut rank = BTreeMap::new();
    for (i, layer) in LAYERS.iter().enumerate() {
        for m in *layer {
            assert!(rank.insert(*m, i).is_none(), "`{m}` is twice in LAYERS");
        }
    }
    rank
}

fn report(problems: Vec<String>) {
    if !problems.is_empty() {
        panic!(
            "{} layering problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
}

fn join(m: &[String]) -> String {
    m.join("::")
}

type ModPath = Vec<String>;

struct Crate {
    /// Each module that has its own file, and that file.
    files: BTreeMap<ModPath, PathBuf>,
    /// Names a module file brings in with `use` (re-exported or not: a child module sees
    /// both): name → the path it stands for, so `super::Name` counts as an import of the
    /// file that defines `Name`.
    aliases: BTreeMap<ModPath, BTreeMap<String, ModPath>>,
}

#[derive(Clone)]
struct Edge {
    from: ModPath,
    to: ModPath,
    /// The path as resolved (`crate::a::b`), for the message.
    path: String,
    file: PathBuf,
    line: usize,
}

impl Crate {
    fn read() -> Self {
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

    fn edges(&self) -> Vec<Edge> {
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

/// Elementary circles, each reported once from its smallest node.
fn cycles(graph: &BTreeMap<ModPath, BTreeMap<ModPath, Edge>>) -> Vec<Vec<ModPath>> {
    fn walk(
        graph: &BTreeMap<ModPath, BTreeMap<ModPath, Edge>>,
        start: &ModPath,
        stack: &mut Vec<ModPath>,
        out: &mut Vec<Vec<ModPath>>,
    ) {
        let here = stack.last().unwrap().clone();
        for next in graph.get(&here).into_iter().flat_map(|m| m.keys()) {
            if next == start {
                out.push(stack.clone());
            } else if next > start && !stack.contains(next) && out.len() < 50 {
                stack.push(next.clone());
                walk(graph, start, stack, out);
                stack.pop();
            }
        }
    }
    let mut out = Vec::new();
    for start in graph.keys() {
        walk(graph, start, &mut vec![start.clone()], &mut out);
    }
    out
}

/// `mod name;` declarations (not inline `mod name { … }`), with their `#[path]`.
fn mod_decls(src: &str) -> Vec<(String, Option<String>)> {
    let toks = lex(src);
    let mut out = Vec::new();
    let mut path_attr = None;
    for i in 0..toks.len() {
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
                out.push((name.clone(), path_attr.take()));
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

struct FoundPath {
    /// Absolute, without `crate`.
    resolved: ModPath,
    line: usize,
    /// A `pub use` (routing, not a dependency of the file's own code).
    reexport: bool,
    /// The name a `use` item binds (`x` for `use a::x`, `y` for `use a::x as y`); none for
    /// globs and paths in code.
    alias: Option<String>,
    /// The module (file module plus inline `mod` blocks) the path is written in.
    in_module: ModPath,
}

/// Calls `found` for every path in `src` that names this crate's modules.
fn scan(
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
