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
