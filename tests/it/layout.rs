//! The module layout's dependency rules, checked over the source text (`crate::` paths outside
//! `#[cfg(test)]`): no import cycles between top-level modules, each layer importing only the
//! layers below it, backends never importing each other, modes never importing each other.
//! ARCHITECTURE.md states the same rules in words.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Inside `modes/`, the only backend a mode may name is its platform's (module path prefix →
/// the `crate::backends::…` it may use).
const MODE_BACKENDS: &[(&str, &str)] = &[("lambda", "aws"), ("daemon", "gcp")];

/// What each top-level module of `src/` may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("support", &[]),
    ("core", &["support"]),
    ("engine", &["core", "support"]),
    ("backends", &["core", "support"]),
    ("sinks", &["backends", "core", "support"]),
    ("simulator", &["core", "support"]),
    (
        "config",
        &["backends", "sinks", "engine", "core", "support"],
    ),
    (
        "app",
        &["config", "backends", "sinks", "engine", "core", "support"],
    ),
    (
        "modes",
        &[
            "app",
            "config",
            "backends",
            "engine",
            "core",
            "support",
            "simulator",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// `crate::a::b…` paths in non-test code, as segment lists (groups `crate::{a, b::c}` expanded
/// to their first segment).
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let code: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !first.is_empty() {
                    out.push(vec![first]);
                }
            }
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        out.push(
            path.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        );
    }
    out
}

#[test]
fn layers_import_only_what_their_rule_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap_or(file);
        let parts: Vec<String> = rel
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .collect();
        let top = parts[0].clone();
        if top == "lib" || top == "main" {
            continue;
        }
        assert!(
            allowed.contains_key(top.as_str()),
            "src/{} is a new top-level module: give it a rule in ALLOWED and ARCHITECTURE.md",
            rel.display()
        );
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
        for path in crate_paths(&text) {
            let Some(dep) = path.first() else { continue };
            if *dep == top {
                // Inside one layer: backends and modes must not reach into a sibling folder.
                // (`mod.rs` of the layer is its registry; `env.rs` is a one-file backend.)
                let own = parts.get(1).filter(|p| p.as_str() != "mod");
                if (top == "backends" || top == "modes")
                    && let Some(own) = own
                    && let Some(sibling) = path.get(1)
                    && sibling != own
                {
                    violations.push(format!(
                        "src/{} imports crate::{top}::{sibling}: a {} never imports another",
                        rel.display(),
                        if top == "backends" { "backend" } else { "mode" }
                    ));
                }
                continue;
            }
            if top == "modes" && *dep == "backends" {
                let mode = parts.get(1).map(String::as_str).unwrap_or_default();
                let backend = path.get(1).map(String::as_str).unwrap_or_default();
                let allowed = MODE_BACKENDS
                    .iter()
                    .any(|(m, b)| *m == mode && (backend == *b || backend.is_empty()));
                // The registry types (`backends::StoreConfig`, …) are fine; a backend's own
                // module only for the mode of its platform.
                let registry = backend.chars().next().is_some_and(char::is_uppercase);
                if !allowed && !registry {
                    violations.push(format!(
                        "src/{} imports crate::backends::{backend}: only a platform's own mode \
                         may name its backend",
                        rel.display()
                    ));
                }
            }
            edges.entry(top.clone()).or_default().insert(dep.clone());
            if !allowed[top.as_str()].contains(dep.as_str()) {
                violations.push(format!(
                    "src/{} imports crate::{dep}, which the `{top}` layer may not",
                    rel.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    // The rules above form a DAG, but check the actual graph too.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = stack.iter().position(|s| s == m) {
            panic!("import cycle: {} -> {m}", stack[i..].join(" -> "));
        }
        stack.push(m.to_string());
        for d in edges.get(m).into_iter().flatten() {
            visit(d, edges, stack, done);
        }
        stack.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_path_scanner_sees_groups_and_skips_tests() {
    let text = "use crate::core::store::X;\nuse crate::{engine, support::tls};\n// crate::config in a comment\n#[cfg(test)]\nuse crate::modes;";
    let got: Vec<String> = crate_paths(text).iter().map(|p| p.join("::")).collect();
    assert_eq!(got, ["core::store::X", "engine", "support"]);
}
