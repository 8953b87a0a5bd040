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

#[path = "layering/crate_graph.rs"]
mod crate_graph;

use std::collections::{BTreeMap, BTreeSet};

use crate_graph::{join, scan, Crate, Edge, ModPath};

/// The layer order, top first. A module may import only modules of a later (lower) layer.
/// Keep in sync with ARCHITECTURE.md ("Layers").
const LAYERS: &[&[&str]] = &[
    // the binary's subcommands; `cli::run` wires the agent
    &["cli"],
    // the agent's two faces: the diff of desired pods vs workers, and the HTTP API
    &["manager", "api"],
    // one task per pod: its life from image pull to the last container's exit
    &["worker", "update", "pressure", "shutdown"],
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
    // pod cgroups, QoS and node allocatable; the pod network through CNI plugins
    &["cgroups", "network", "userns"],
    // the pod spec, its validation and quantities; the on-disk layout and records
    &["manifest", "state"],
    // leaf utilities
    &["logs", "node", "tls", "heap", "backoff", "tasks", "lock_fd"],
];

/// Edges that still point up, each with the issue that removes it. Empty is the goal; an
/// entry that no longer matches an import fails the test, so the list only shrinks.
const KNOWN_UPWARD: &[(&str, &str, &str)] = &[];

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
        "TODO(issue 16): validate/mod.rs helpers used by validate/*.rs",
    ),
    (
        "source",
        "TODO(issue 16): Snapshot, ProblemKind live in source/mod.rs",
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
