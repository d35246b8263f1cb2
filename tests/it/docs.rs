//! The docs' claims, tested: every config key the code accepts is documented; every ```toml
//! config block of the README and the book loads; the `--json` fields the docs list are the
//! ones `rotate` and `status` print; every metric the docs name is one the code registers.
//! (Links: scripts/check_docs.py; the book itself: `mdbook build docs` in scripts/test-docs.sh.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::Env;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every Markdown file of the book and the README, with its text.
fn docs() -> Vec<(PathBuf, String)> {
    let mut out = vec![root().join("README.md")];
    let mut stack = vec![root().join("docs/src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out.into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, t)
        })
        .collect()
}

/// The Rust files under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The fields of every `#[serde(deny_unknown_fields)]` struct in `file`: the config keys.
fn strict_fields(file: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !l.contains("deny_unknown_fields") {
            continue;
        }
        let Some(start) = (i..lines.len().min(i + 4)).find(|&j| lines[j].contains("struct "))
        else {
            continue; // an enum: its tags are documented with their variants
        };
        let name = lines[start]
            .split("struct ")
            .nth(1)
            .and_then(|r| r.split([' ', '{', '<']).next())
            .unwrap_or_default()
            .to_string();
        let mut rename = None;
        for l in &lines[start + 1..] {
            if l.starts_with('}') {
                break;
            }
            let t = l.trim();
            if let Some(r) = t
                .strip_prefix("#[serde(rename = \"")
                .and_then(|r| r.split('"').next())
            {
                rename = Some(r.to_string());
                continue;
            }
            if t.starts_with("//") || t.starts_with("#[") {
                continue;
            }
            let t = t
                .trim_start_matches("pub(super) ")
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ");
            if let Some((field, _)) = t.split_once(": ")
                && !field.is_empty()
                && field
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            {
                out.push((
                    name.clone(),
                    rename.take().unwrap_or_else(|| field.to_string()),
                ));
            }
        }
    }
    out
}

#[test]
fn every_config_key_the_code_accepts_is_documented() {
    let mut files = Vec::new();
    for dir in ["src/config", "src/backends", "src/sinks"] {
        rust_files(&root().join(dir), &mut files);
    }
    files.push(root().join("src/support/secret_ref.rs"));
    let documented: String = docs().into_iter().map(|(_, t)| t).collect();
    let mut keys = 0;
    let mut missing = Vec::new();
    for f in &files {
        for (strukt, key) in strict_fields(f) {
            keys += 1;
            // `key`, `table.key`, `key = …` in an example, or `[key]` for a table.
            let forms = [
                format!("`{key}`"),
                format!(".{key}`"),
                format!("{key} ="),
                format!("[{key}]"),
            ];
            if !forms.iter().any(|f| documented.contains(f)) {
                missing.push(format!(
                    "{key} ({strukt}, {})",
                    f.strip_prefix(root()).unwrap_or(f).display()
                ));
            }
        }
    }
    assert!(
        keys > 60,
        "the scan found only {keys} keys: is it still reading the structs?"
    );
    assert!(
        missing.is_empty(),
        "config keys the code accepts but no page of docs/src or the README names:\n{}",
        missing.join("\n")
    );
}

/// The ```toml config blocks of the docs: (file, block).
fn config_blocks() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for (path, text) in docs() {
        let mut block: Option<String> = None;
        for line in text.lines() {
            match &mut block {
                None if line.trim() == "```toml config" => block = Some(String::new()),
                Some(b) if line.trim() == "```" => {
                    out.push((path.clone(), std::mem::take(b)));
                    block = None;
                }
                Some(b) => {
                    b.push_str(line);
                    b.push('\n');
                }
                None => {}
            }
        }
    }
    out
}

#[tokio::test]
async fn every_config_block_of_the_docs_loads() {
    let env = Env::new().await;
    let blocks = config_blocks();
    assert!(
        blocks.len() >= 2,
        "the README and the book carry `toml config` blocks"
    );
    for (path, block) in blocks {
        let cfg = env.write_config(&block);
        // The whole config loads and validates; nothing is attempted for a name it lacks.
        let out = env
            .run(&cfg, &["rotate", "--dry-run", "--token", "__none__"])
            .await;
        assert!(
            out.code == 2 && out.stderr.contains("no token named `__none__`"),
            "{}: a documented config does not load:\n{block}\n{out}",
            path.display()
        );
    }
}

/// The field names a paragraph of commands.md lists after `marker` and before `end`: the
/// backticked identifiers outside parentheses.
fn listed_fields(marker: &str, end: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("docs/src/commands.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("commands.md lost {marker:?}"));
    let rest = &text[start + marker.len()..];
    let para = &rest[..rest.find(end).unwrap_or(rest.len())];
    let mut fields = BTreeSet::new();
    let (mut depth, mut in_code, mut span) = (0i32, false, String::new());
    for c in para.chars() {
        match (in_code, c) {
            (false, '`') => {
                in_code = true;
                span.clear();
            }
            (true, '`') => {
                in_code = false;
                if depth == 0
                    && !span.is_empty()
                    && span.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                {
                    fields.insert(span.clone());
                }
            }
            (true, c) => span.push(c),
            (false, '(') => depth += 1,
            (false, ')') => depth -= 1,
            _ => {}
        }
    }
    fields
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_json_fields_the_docs_list_are_the_ones_printed() {
    let env = Env::new().await;
    let cfg = env.config();
    let out = env.run(&cfg, &["rotate", "--json"]).await;
    let report: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    same_fields(
        "rotate --json",
        &keys(&report[0]),
        &listed_fields("Each report has the fields", "\n- `"),
        &["replicas", "hooks"],
    );
    let out = env.run(&cfg, &["status", "--json"]).await;
    let rows: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    same_fields(
        "status --json",
        &keys(&rows[0]),
        &listed_fields("`--json` prints an array with", "Exits 1"),
        &["replicas"],
    );
}

/// `printed` and `listed` hold the same fields, but for `conditional` ones a plain run leaves out.
fn same_fields(
    what: &str,
    printed: &BTreeSet<String>,
    listed: &BTreeSet<String>,
    conditional: &[&str],
) {
    assert!(
        printed.is_subset(listed),
        "{what} prints fields commands.md does not list: {:?}",
        printed.difference(listed).collect::<Vec<_>>()
    );
    let absent: Vec<_> = listed
        .difference(printed)
        .filter(|f| !conditional.contains(&f.as_str()))
        .collect();
    assert!(
        absent.is_empty(),
        "commands.md lists {what} fields it does not print: {absent:?}"
    );
}

#[test]
fn every_metric_the_docs_name_is_registered() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut registered = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for part in text.split("\"deepvue_rotator_").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            registered.insert(format!("deepvue_rotator_{name}"));
        }
    }
    // Names with the prefix that are not metrics (a Vault field).
    let not_metrics = ["deepvue_rotator_write_id"];
    let mut pages: Vec<(PathBuf, String)> = docs();
    for extra in [
        "deploy/systemd/README.md",
        "deploy/prometheus/README.md",
        "deploy/kubernetes/README.md",
    ] {
        let p = root().join(extra);
        pages.push((p.clone(), std::fs::read_to_string(&p).unwrap_or_default()));
    }
    let mut unknown = BTreeSet::new();
    let mut named = 0;
    for (path, text) in pages {
        for part in text.split("deepvue_rotator_").skip(1) {
            let tail: String = part
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let name = format!("deepvue_rotator_{}", tail.trim_end_matches('_'));
            if not_metrics.contains(&name.as_str()) || tail.is_empty() {
                continue;
            }
            named += 1;
            let base = ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            if !registered.contains(&name) && !registered.contains(base) {
                unknown.insert(format!(
                    "{name} ({})",
                    path.strip_prefix(root()).unwrap_or(&path).display()
                ));
            }
        }
    }
    assert!(named > 10, "the docs name metrics");
    assert!(
        unknown.is_empty(),
        "metrics the docs name that the code does not register: {unknown:?}"
    );
}
