//! File-store specifics beyond the shared scenario suite: modes, pruning, crash leftovers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use deepvue_rotator::backends::file::FileStore;
use deepvue_rotator::core::store::{TokenStore, Version, WriteMode};

use crate::scenarios::doc;
use crate::support::Env;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_default()
}

#[tokio::test]
async fn modes_layout_and_pruning() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = root.path().join("a/b/token");
    let store = FileStore::new(dir.clone(), 3, Duration::from_secs(5));
    let mut prev = None;
    for i in 0..6 {
        let v = store
            .write(
                &doc(&format!("tok-{i}")),
                WriteMode::from_current(prev.as_ref(), None),
            )
            .await
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        prev = Some(v);
    }
    assert_eq!(prev, Some(Version("6".into())));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("versions")), 0o700);
    let link = std::fs::read_link(dir.join("current.json")).unwrap_or_default();
    assert_eq!(link, Path::new("versions/0000000006.json"));
    let mut names: Vec<String> = std::fs::read_dir(dir.join("versions"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    assert_eq!(
        names,
        ["0000000004.json", "0000000005.json", "0000000006.json"],
        "keep_versions = 3"
    );
    for n in &names {
        assert_eq!(mode(&dir.join("versions").join(n)), 0o600, "{n}");
    }
    // Applications read current.json and get the documented JSON.
    let text = std::fs::read_to_string(dir.join("current.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(v["access_token"], "tok-5");
    assert_eq!(v["token_type"], "bearer");
}

#[tokio::test]
async fn crash_leftovers_do_not_tear_or_collide() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = root.path().join("token");
    let store = FileStore::new(dir.clone(), 5, Duration::from_secs(5));
    let v1 = store
        .write(&doc("tok-1"), WriteMode::Create { lease: None })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A writer killed after renaming its version file but before repointing current.json,
    // and another killed mid temp-file write.
    std::fs::copy(
        dir.join("versions/0000000001.json"),
        dir.join("versions/0000000002.json"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("versions/.tmp-999-3"), "{\"access_tok")
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("versions/0000000003.json", dir.join(".tmp-current-999"))
        .unwrap_or_else(|e| panic!("{e}"));

    let cur = store
        .read_current()
        .await
        .unwrap_or_else(|e| panic!("read: {e}"))
        .map(|s| s.version);
    assert_eq!(cur.as_ref(), Some(&v1), "the orphan version is not current");
    let v = store
        .write(
            &doc("tok-3"),
            WriteMode::Update {
                expected: &v1,
                lease: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v, Version("3".into()), "the next version skips the orphan");
    assert!(!dir.join("versions/.tmp-999-3").exists() && !dir.join(".tmp-current-999").exists());
}

#[tokio::test]
async fn unusable_documents_make_the_token_due_and_are_repaired() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let file = env.store_dir("prod").join("versions/0000000001.json");
    std::fs::write(
        &file,
        "{\"access_token\": \"x\", \"expiry\": \"not a time\"}",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = env.run(&cfg, &["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    assert_eq!(rows[0]["due"], true, "{out}");
    assert!(
        rows[0]["due_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("unusable"),
        "{out}"
    );
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("rotated -> version 2"), "{out}");
    assert_eq!(env.calls(), 2);
    let out = env.run(&cfg, &["read", "prod"]).await;
    assert!(out.stdout.starts_with("simtok_"), "{out}");
}

/// `mode = "0640"`, `group = …`: directories 0750 and version files 0640 in that group, so an
/// application running as another user of the group reads `current.json`; never world bits;
/// `state.json` and the locks stay the rotator's own. A store made owner-only before is
/// shared from the next write; bad settings are refused at load.
#[tokio::test]
async fn a_group_readable_store_shares_versions_with_one_group_and_nothing_with_the_world() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new().await;
    let me = rustix::process::getegid().as_raw();
    // As root: another group, by name (a chown to it is allowed); else our own gid.
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let (group, gid) = if rustix::process::geteuid().is_root() {
        groups
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((f.first()?.to_string(), f.get(2)?.parse::<u32>().ok()?))
            })
            .find(|(_, g)| *g != me)
            .unwrap_or_else(|| panic!("no other group in /etc/group"))
    } else {
        (me.to_string(), me)
    };
    let dir = env.store_dir("prod");
    let plain = env.config();
    assert_eq!(env.run(&plain, &["rotate"]).await.code, 0);
    assert_eq!(mode(&dir), 0o700, "owner-only by default");
    let shared = env.write_config(&format!(
        "{}[[tokens]]\nname = \"prod\"\ncredentials = {{ backend = \"env\" }}\nstore = {{ backend = \"file\", path = \"{}\", mode = \"0640\", group = \"{group}\" }}\n",
        env.deepvue_section(""),
        dir.display()
    ));
    let out = env.run(&shared, &["rotate", "--force"]).await;
    assert_eq!(out.code, 0, "{out}");
    for d in [dir.clone(), dir.join("versions")] {
        assert_eq!(mode(&d), 0o750, "{}", d.display());
        assert_eq!(std::fs::metadata(&d).map(|m| m.gid()).ok(), Some(gid));
    }
    let current = std::fs::canonicalize(dir.join("current.json")).unwrap_or_default();
    assert_eq!(mode(&current), 0o640, "the current version");
    assert_eq!(std::fs::metadata(&current).map(|m| m.gid()).ok(), Some(gid));
    assert_eq!(
        mode(&dir.join("state.json")),
        0o600,
        "run state stays the rotator's"
    );
    for entry in walk(&dir) {
        let m = std::fs::symlink_metadata(&entry)
            .map(|m| m.mode())
            .unwrap_or_default();
        if m & 0o170000 != 0o120000 {
            assert_eq!(m & 0o007, 0, "no world bits on {}", entry.display());
        }
    }
    for (store, says) in [
        ("mode = \"0644\"", "is not \"0600\""),
        ("group = \"wheel-x\"", "group needs mode = \"0640\""),
        (
            "mode = \"0640\", group = \"no-such-group-xyz\"",
            "is not in /etc/group",
        ),
    ] {
        let cfg = env.write_config(&format!(
            "{}[[tokens]]\nname = \"prod\"\ncredentials = {{ backend = \"env\" }}\nstore = {{ backend = \"file\", path = \"{}\", {store} }}\n",
            env.deepvue_section(""),
            dir.display()
        ));
        let out = env.run(&cfg, &["rotate"]).await;
        assert_eq!(out.code, 2, "{store}: {out}");
        assert!(out.all().contains(says), "{store}: {says}: {out}");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
