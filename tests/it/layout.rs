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

/// Every `.rs` file of `src/` with its module path (`backends/aws/mod.rs` → `backends::aws`).
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .into_iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(src).ok()?.to_path_buf();
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_string()
                })
                .collect();
            if parts == ["main"] {
                return None; // the binary's own crate
            }
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            Some((parts, rel))
        })
        .collect()
}

/// `crate::`, `super::` and `self::` paths in non-test code (comments and doc links too: a
/// doc link is a reference), `use` groups expanded, as absolute module paths from `here`.
fn references(text: &str, here: &[String]) -> Vec<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = Vec::new();
    let mut push = |path: &str| {
        let parts: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let Some((head, mut tail)) = parts.split_first() else {
            return;
        };
        let mut base: Vec<String> = match *head {
            "crate" => Vec::new(),
            "self" => here.to_vec(),
            "super" => here[..here.len().saturating_sub(1)].to_vec(),
            _ => return,
        };
        while *head == "super" && tail.first() == Some(&"super") {
            base.pop();
            tail = &tail[1..];
        }
        base.extend(tail.iter().map(|s| s.to_string()));
        out.push(base);
    };
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| rest.starts_with(**p))
            .filter(|_| i == 0 || !ident(bytes[i - 1]));
        let Some(_) = starts else {
            i += 1;
            continue;
        };
        // Read the path, then a `{…}` group if one follows.
        let mut j = i;
        while j < bytes.len() && (ident(bytes[j]) || bytes[j] == ':') {
            j += 1;
        }
        let prefix: String = bytes[i..j].iter().collect();
        if j < bytes.len() && bytes[j] == '{' {
            let mut depth = 0;
            let mut k = j;
            while k < bytes.len() {
                match bytes[k] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            let group: String = bytes[j + 1..k.min(bytes.len())].iter().collect();
            for item in split_group(&group) {
                for expanded in expand(&item) {
                    push(&format!("{prefix}{expanded}"));
                }
            }
            i = k;
        } else {
            push(&prefix);
            i = j;
        }
    }
    out
}

/// Top-level items of a `use` group (`a, b::{c, d}` → `a`, `b::{c, d}`).
fn split_group(group: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in group.chars() {
        match c {
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth -= 1;
                cur.push(c);
            }
            c if c.is_whitespace() => {}
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.retain(|s| !s.is_empty() && s != "self");
    out
}

/// `b::{c, d::e}` → `b::c`, `b::d::e`.
fn expand(item: &str) -> Vec<String> {
    match item.find('{') {
        None => vec![item.split(" as ").next().unwrap_or(item).to_string()],
        Some(i) => {
            let inner = item[i + 1..].trim_end_matches('}');
            split_group(inner)
                .iter()
                .flat_map(|x| expand(x))
                .map(|x| format!("{}{x}", &item[..i]))
                .collect()
        }
    }
}

/// The file a module path lands in: its longest prefix that is a module.
fn resolve<'m>(mods: &'m BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<&'m PathBuf> {
    (1..=path.len()).rev().find_map(|n| mods.get(&path[..n]))
}

/// File → files it references (a parent module naming its own children is not an edge).
fn file_graph(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mods = modules(src);
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (here, rel) in &mods {
        let text = std::fs::read_to_string(src.join(rel)).unwrap_or_else(|e| panic!("{e}"));
        // A parent module (`mod.rs`, `lib.rs`) naming a file below it re-exports its own.
        let below = (rel.ends_with("mod.rs") || rel.ends_with("lib.rs"))
            .then(|| rel.parent().unwrap_or(Path::new("")).to_path_buf());
        let entry = edges.entry(rel.clone()).or_default();
        for path in references(&text, here) {
            let Some(target) = resolve(&mods, &path) else {
                continue;
            };
            let own_child = below.as_ref().is_some_and(|d| target.starts_with(d));
            if target != rel && !own_child {
                entry.insert(target.clone());
            }
        }
    }
    edges
}

/// Strongly connected components with more than one file.
fn circles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    // Reachability closure: small graphs (a hundred files), so O(n³) is fine.
    let nodes: Vec<&PathBuf> = edges.keys().collect();
    let reach = |from: &PathBuf| -> BTreeSet<PathBuf> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&PathBuf, BTreeSet<PathBuf>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) {
            continue;
        }
        let comp: Vec<PathBuf> = nodes
            .iter()
            .filter(|m| reached[*n].contains(**m) && reached[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if comp.len() > 1 {
            done.extend(comp.iter().cloned());
            out.push(comp);
        }
    }
    out
}

#[test]
fn no_import_circle_between_any_two_files_of_src_at_any_depth() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = circles(&file_graph(&src));
    let shown: Vec<String> = found
        .iter()
        .map(|c| {
            c.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" <-> ")
        })
        .collect();
    assert!(shown.is_empty(), "import circles:\n{}", shown.join("\n"));
}

#[test]
fn the_circle_finder_sees_doc_links_groups_and_super() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = dir.path();
    std::fs::create_dir_all(src.join("core")).unwrap_or_else(|e| panic!("{e}"));
    for (f, text) in [
        ("lib.rs", "pub mod core;"),
        ("core/mod.rs", "pub mod a;\npub mod b;\nuse self::a::X;"),
        ("core/a.rs", "use super::{b::Y, c};\npub struct X;"),
        ("core/b.rs", "//! See [`super::a::X`].\npub struct Y;"),
    ] {
        std::fs::write(src.join(f), text).unwrap_or_else(|e| panic!("{e}"));
    }
    let found = circles(&file_graph(src));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].len(),
        2,
        "a <-> b, not the parent naming its children: {found:?}"
    );
}

/// Files outside a backend's own folder that name it. The registry line names every backend;
/// beyond it only a sink a backend provides (SNS is the `aws` backend's, Pub/Sub the `gcp`
/// backend's).
const NAMES_A_BACKEND: &[(&str, &[&str])] =
    &[("aws", &["sinks/mod.rs"]), ("gcp", &["sinks/mod.rs"])];

#[test]
fn a_backend_is_its_folder_plus_one_registry_line() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let backends: BTreeSet<String> = mods
        .keys()
        .filter(|p| p.len() >= 2 && p[0] == "backends")
        .map(|p| p[1].clone())
        .collect();
    assert!(
        ["aws", "env", "file", "gcp", "vault"]
            .iter()
            .all(|b| backends.contains(*b)),
        "{backends:?}"
    );
    let registry = std::fs::read_to_string(src.join("backends/mod.rs")).unwrap_or_default();
    for b in &backends {
        // One line in the registry macro's invocation.
        let invocation = registry.split("registry! {").nth(1).unwrap_or_default();
        let lines = invocation
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{b}:")))
            .count();
        assert_eq!(lines, 1, "backend `{b}`: one registry line");
        // Every other file of src/ that names it.
        let mut naming = BTreeSet::new();
        for (here, rel) in &mods {
            if here.first().is_some_and(|h| h == "backends")
                && (here.get(1) == Some(b) || here.len() == 1)
            {
                continue;
            }
            let text = std::fs::read_to_string(src.join(rel)).unwrap_or_default();
            if references(&text, here)
                .iter()
                .any(|p| p.len() >= 2 && p[0] == "backends" && &p[1] == b)
            {
                naming.insert(rel.display().to_string());
            }
        }
        let allowed: BTreeSet<String> = NAMES_A_BACKEND
            .iter()
            .filter(|(x, _)| x == b)
            .flat_map(|(_, files)| files.iter().map(|f| f.to_string()))
            .collect();
        assert_eq!(
            naming, allowed,
            "backend `{b}` is named outside its folder and the registry (ARCHITECTURE.md, \
             \"Adding a backend\")"
        );
    }
}
