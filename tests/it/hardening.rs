//! Hostile inputs, through the real binary: a tampered file store, a Deepvue (or something
//! posing as it) that echoes, redirects and lies, absurd config values, lost output.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use chrono::{SubsecRound, Utc};
use deepvue_rotator::core::document::TokenDocument;
use deepvue_rotator::core::state::{RunState, StateStore};
use deepvue_rotator::core::store::{TokenStore, WriteMode};
use secrecy::SecretString;

use crate::hostile::{Answer, Hostile};
use crate::receiver::Receiver;
use crate::support::{BIN, CLIENT_ID, CLIENT_SECRET, Env, Output, run};

/// A run that must end: a hang is a failure of its own (not a timing assertion).
async fn ends(what: &str, fut: impl std::future::Future<Output = Output>) -> Output {
    tokio::time::timeout(Duration::from_secs(120), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} never finished"))
}

/// Run with stdout going to `stdout` (`Command::output` would replace it with a pipe).
async fn run_into(mut cmd: tokio::process::Command, stdout: std::process::Stdio) -> Output {
    cmd.stdout(stdout).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
    let out = child
        .wait_with_output()
        .await
        .unwrap_or_else(|e| panic!("wait: {e}"));
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn dev_full() -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap_or_else(|e| panic!("/dev/full: {e}"))
        .into()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

fn mkdir_private(p: &Path) {
    std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    chmod(p, 0o700);
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
}

fn doc_at(
    token: &str,
    issued_at: chrono::DateTime<Utc>,
    expiry: chrono::DateTime<Utc>,
) -> TokenDocument {
    TokenDocument {
        access_token: SecretString::from(token.to_string()),
        token_type: "bearer".into(),
        expiry,
        issued_at,
        x_api_key: None,
    }
}

/// `[deepvue]` pointing at a hostile server, no egress probe, then `tail`, then token `prod`.
fn hostile_config(env: &Env, h: &Hostile, extra: &str, tail: &str) -> PathBuf {
    let ca = env.path(&format!("hostile-ca-{}.pem", rand::random::<u32>()));
    std::fs::write(&ca, &h.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    env.write_config(&format!(
        "[deepvue]\nbase_url = \"{}\"\nca_file = \"{}\"\nbackoff_base = \"10ms\"\nbackoff_max = \"20ms\"\n{extra}\n\n[egress]\nprobe = false\n\n{tail}\n{}",
        h.url(""),
        ca.display(),
        env.token_block("prod", "{ backend = \"env\" }")
    ))
}

fn token_answer(token: &str, token_type: &str, expiry: &str) -> Answer {
    Answer::json(
        200,
        serde_json::json!({"access_token": token, "token_type": token_type, "expiry": expiry}),
    )
}

// ---- 1. the file store never follows a link it did not make ---------------------------------

#[tokio::test]
async fn a_store_directory_that_is_a_symlink_is_refused() {
    let env = Env::new().await;
    let cfg = env.config();
    let victim = env.path("victim");
    mkdir_private(&victim);
    mkdir_private(&env.path("store"));
    symlink(&victim, &env.store_dir("prod"));
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.contains("symbolic link"), "{out}");
    assert!(
        files_in(&victim).is_empty(),
        "nothing written through the link"
    );
    assert_eq!(env.calls(), 0, "nothing minted");
    let out = env.run(&cfg, &["status", "--json"]).await;
    assert!(
        json(&out)[0]["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("symbolic link"),
        "{out}"
    );
}

#[tokio::test]
async fn a_versions_directory_that_is_a_symlink_is_refused_and_nothing_outside_is_touched() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let store = env.store_dir("prod");
    let victim = env.path("victim");
    mkdir_private(&victim);
    std::fs::write(victim.join(".tmp-precious"), "keep").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(victim.join("0000000001.json"), "keep").unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(store.join("versions"), env.path("versions-moved"))
        .unwrap_or_else(|e| panic!("{e}"));
    symlink(&victim, &store.join("versions"));
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stdout.contains("versions") && out.stdout.contains("symbolic link"),
        "{out}"
    );
    assert_eq!(
        files_in(&victim),
        [".tmp-precious", "0000000001.json"],
        "the sweep and the prune never act outside the store"
    );
    assert_eq!(env.calls(), 1, "nothing minted for the refused store");
}

#[tokio::test]
async fn a_loose_or_foreign_store_directory_is_refused() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let store = env.store_dir("prod");
    chmod(&store, 0o777);
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stdout.contains("writable by group or others") && out.stdout.contains("chmod 700"),
        "{out}"
    );
    chmod(&store, 0o700);
    chmod(&store.join("versions"), 0o775);
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.contains("versions"), "{out}");
    chmod(&store.join("versions"), 0o700);
    std::os::unix::fs::chown(&store, Some(65534), Some(65534)).unwrap_or_else(|e| panic!("{e}"));
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.contains("owned by uid 65534"), "{out}");
    assert_eq!(env.calls(), 1, "nothing minted for a refused store");
}

#[tokio::test]
async fn a_planted_lock_file_link_is_not_followed() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let store = env.store_dir("prod");
    let victim = env.path("created-through-the-link");
    std::fs::remove_file(store.join(".rotate.lock")).unwrap_or_else(|e| panic!("{e}"));
    symlink(&victim, &store.join(".rotate.lock"));
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains(".rotate.lock"), "{out}");
    assert!(!victim.exists(), "no file created through the link");
}

#[tokio::test]
async fn a_planted_state_temp_file_link_is_not_followed() {
    // The temp name carries the writer's pid: write through the library in this process.
    let env = Env::new().await;
    assert_eq!(env.run(&env.config(), &["rotate"]).await.code, 0);
    let store = env.store_dir("prod");
    let victim = env.path("precious.txt");
    std::fs::write(&victim, "precious").unwrap_or_else(|e| panic!("{e}"));
    symlink(
        &victim,
        &store.join(format!(".tmp-state-{}", std::process::id())),
    );
    let bytes = RunState::default().to_bytes(4096).unwrap_or_default();
    let result = env.store("prod").write_state(Some(&bytes), None).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap_or_default(),
        "precious"
    );
    let meta =
        std::fs::symlink_metadata(store.join("state.json")).unwrap_or_else(|e| panic!("{e}"));
    assert!(meta.file_type().is_file(), "state.json is a regular file");
}

// ---- 7. the version counter ------------------------------------------------------------------

#[tokio::test]
async fn the_version_counter_never_wraps_or_leaves_its_format() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let store = env.store_dir("prod");
    let versions = store.join("versions");
    std::fs::rename(
        versions.join("0000000001.json"),
        versions.join("9999999999.json"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(store.join("current.json")).unwrap_or_else(|e| panic!("{e}"));
    symlink(
        Path::new("versions/9999999999.json"),
        &store.join("current.json"),
    );
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("exhausted"), "{out}");
    assert_eq!(files_in(&versions), ["9999999999.json"]);
    assert_eq!(
        env.current_version("prod").await.as_deref(),
        Some("9999999999")
    );

    // A name that is not the store's own format is never taken for a version.
    std::fs::rename(
        versions.join("9999999999.json"),
        versions.join("18446744073709551615.json"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(store.join("current.json")).unwrap_or_else(|e| panic!("{e}"));
    symlink(
        Path::new("versions/18446744073709551615.json"),
        &store.join("current.json"),
    );
    let out = env.run(&cfg, &["rotate", "--force"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("unexpected target"), "{out}");
    assert_eq!(files_in(&versions), ["18446744073709551615.json"]);
}

// ---- 8. store reads are bounded and never block ----------------------------------------------

#[tokio::test]
async fn store_reads_are_bounded_and_never_block() {
    let env = Env::new().await;
    let names = ["fifo", "huge", "link", "state"];
    let mut text = env.deepvue_section("");
    for n in names {
        text.push_str(&env.token_block(n, "{ backend = \"env\" }"));
    }
    let cfg = env.write_config(&text);
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let version = |n: &str| env.store_dir(n).join("versions/0000000001.json");
    let mkfifo = |p: &Path| {
        let _ = std::fs::remove_file(p);
        let ok = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "mkfifo {}", p.display());
    };
    mkfifo(&version("fifo"));
    let now = Utc::now().trunc_subsecs(0);
    let big = serde_json::json!({
        "access_token": "tok-huge", "token_type": "bearer",
        "expiry": deepvue_rotator::core::document::format_time(now + chrono::Duration::hours(23)),
        "issued_at": deepvue_rotator::core::document::format_time(now),
        "padding": "x".repeat(100 * 1024),
    });
    std::fs::write(version("huge"), big.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let outside = env.path("outside.json");
    std::fs::rename(version("link"), &outside).unwrap_or_else(|e| panic!("{e}"));
    symlink(&outside, &version("link"));
    mkfifo(&env.store_dir("state").join("state.json"));

    let out = ends("status", env.run(&cfg, &["status", "--json"])).await;
    let rows = json(&out);
    let row = |i: usize| &rows[i];
    for (i, why) in [
        (0, "not a regular file"),
        (1, "larger than 64 KiB"),
        (2, "symbolic link"),
    ] {
        assert_eq!(row(i)["due"], true, "{}: {out}", names[i]);
        assert!(
            row(i)["due_reason"]
                .as_str()
                .unwrap_or_default()
                .contains(why),
            "{}: {out}",
            names[i]
        );
    }
    assert!(
        row(3)["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("state.json"),
        "{out}"
    );
    // A rotation repairs the unusable ones without touching what lies outside.
    let out = ends("rotate", env.run(&cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(outside.is_file());
}

// ---- 2. redaction of every encoding of the credentials --------------------------------------

const ODD_SECRET: &str = "SEKRET+s3cr/3t=XYZ q";

/// Every form of the odd secret and the client id that must never appear (computed by hand,
/// not by the code under test).
fn encoded_forms() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut forms = vec![
        ODD_SECRET.to_string(),
        "SEKRET%2Bs3cr%2F3t%3DXYZ+q".to_string(),
        "SEKRET%2bs3cr%2f3t%3dXYZ+q".to_string(),
        "SEKRET%2Bs3cr%2F3t%3DXYZ%20q".to_string(),
        b64.encode(ODD_SECRET),
        b64url.encode(ODD_SECRET),
        b64.encode(format!("{CLIENT_ID}:{ODD_SECRET}")),
        CLIENT_ID.to_string(),
    ];
    // The middle of each base64 form, whatever its alignment in a longer stream.
    forms.push(b64.encode(&ODD_SECRET.as_bytes()[3..15]));
    forms
}

fn echo_answer(req: &crate::hostile::Request) -> Answer {
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let lower = body
        .replace("%2B", "%2b")
        .replace("%2F", "%2f")
        .replace("%3D", "%3d");
    let detail = format!(
        "bad request body: {body} | {lower} | {} | {} | Basic {} | {}",
        body.replace('+', "%20"),
        b64.encode(ODD_SECRET),
        b64.encode(format!("{CLIENT_ID}:{ODD_SECRET}")),
        b64url.encode(ODD_SECRET),
    );
    Answer::json(401, serde_json::json!({ "detail": detail }))
}

#[tokio::test]
async fn every_encoding_of_the_credentials_is_redacted_everywhere() {
    let env = Env::new().await;
    let h = Hostile::start(echo_answer).await;
    let rx = Receiver::start(&[("/hook", 200, "")]).await;
    let rx_ca = env.path("rx-ca.pem");
    std::fs::write(&rx_ca, &rx.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    let cfg = hostile_config(
        &env,
        &h,
        "request_encoding = \"urlencoded\"",
        &format!(
            "[alerting]\nca_file = \"{}\"\n\n[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            rx_ca.display(),
            rx.url("/hook")
        ),
    );
    let out = env.run_with_secret(&cfg, ODD_SECRET, &["rotate"]).await;
    assert_eq!(out.code, 4, "{out}");
    let posted = String::from_utf8_lossy(&h.received("/v1/authorize")[0].body).into_owned();
    assert!(
        posted.contains("SEKRET%2Bs3cr%2F3t%3DXYZ+q"),
        "the server saw the form: {posted}"
    );
    assert!(out.stdout.contains("[REDACTED]"), "{out}");
    let state = std::fs::read_to_string(env.store_dir("prod").join("state.json"))
        .unwrap_or_else(|e| panic!("state.json: {e}"));
    let status = env.run(&cfg, &["status"]).await;
    let json_status = env.run(&cfg, &["status", "--json"]).await;
    let alerts: Vec<String> = rx
        .posts("/hook")
        .iter()
        .map(|p| String::from_utf8_lossy(&p.body).into_owned())
        .collect();
    assert_eq!(alerts.len(), 1, "{out}");
    for form in encoded_forms() {
        for (what, text) in [
            ("rotate output", out.all()),
            ("state.json", state.clone()),
            ("status", status.all()),
            ("status --json", json_status.all()),
            ("webhook body", alerts[0].clone()),
        ] {
            assert!(!text.contains(&form), "{what} holds `{form}`:\n{text}");
        }
    }
}

/// Secrets with `%`, `+`, `"`, `\\`, `/`, `=`, spaces and non-ASCII, echoed back by Deepvue
/// in every spelling a peer might use: none survives in any output or kept state.
#[tokio::test]
async fn secrets_with_percent_quotes_slashes_and_non_ascii_are_redacted_in_every_encoding() {
    use base64::Engine;
    for secret in [
        "Secret%Value123",
        "qu\"ote\\back/slash=+plus",
        "ünïcødé-sécret€ 中%41",
    ] {
        let env = Env::new().await;
        let h = Hostile::start(|req: &crate::hostile::Request| {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            let sent: String = url::form_urlencoded::parse(body.as_bytes())
                .find(|(k, _)| k == "client_secret")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let lower = body.chars().collect::<String>().to_lowercase();
            let detail = format!(
                "bad request body: {body} | {lower} | {} | json {} | b64 {} | basic {}",
                body.replace('+', "%20"),
                serde_json::to_string(&sent).unwrap_or_default(),
                base64::engine::general_purpose::STANDARD.encode(&sent),
                base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{sent}")),
            );
            Answer::json(401, serde_json::json!({ "detail": detail }))
        })
        .await;
        let cfg = hostile_config(&env, &h, "request_encoding = \"urlencoded\"", "");
        let out = env.run_with_secret(&cfg, secret, &["rotate"]).await;
        assert_eq!(out.code, 4, "{out}");
        assert!(out.stdout.contains("[REDACTED]"), "{out}");
        let state = std::fs::read_to_string(env.store_dir("prod").join("state.json"))
            .unwrap_or_else(|e| panic!("state.json: {e}"));
        let status = env.run(&cfg, &["status"]).await;
        let json_status = env.run(&cfg, &["status", "--json"]).await;
        for form in crate::support::secret_forms(secret) {
            for (what, text) in [
                ("rotate output", out.all()),
                ("state.json", state.clone()),
                ("status", status.all()),
                ("status --json", json_status.all()),
            ] {
                assert!(
                    !text.contains(&form),
                    "{what} holds `{form}` of `{secret}`:\n{text}"
                );
            }
        }
    }
}

/// A published client secret (`publish_api_key`) with `%`, quotes, slashes and non-ASCII:
/// stored exactly (the document carries it as written), and absent from trace logs and status
/// in every encoding.
#[tokio::test]
async fn a_published_api_key_with_odd_characters_is_stored_exactly_and_never_logged() {
    for secret in [
        "Secret%Value123",
        "qu\"ote\\back/slash=+plus",
        "ünïcødé-sécret€ 中%41",
    ] {
        let env = Env::accepting(secret).await;
        let cfg = env.write_config(&format!(
            "{}{}publish_api_key = true\n",
            env.deepvue_section(""),
            env.token_block("prod", "{ backend = \"env\" }")
        ));
        let mut cmd = env.command(&cfg, &["rotate", "--force"]);
        cmd.env("DEEPVUE_CLIENT_SECRET", secret)
            .env("RUST_LOG", "trace");
        let out = run(cmd).await;
        assert_eq!(out.code, 0, "{out}");
        let read = env
            .run_with_secret(&cfg, secret, &["read", "prod", "--json"])
            .await;
        let doc: serde_json::Value = serde_json::from_str(&read.stdout).unwrap_or_default();
        assert_eq!(doc["x_api_key"], secret, "stored exactly");
        let status = env
            .run_with_secret(&cfg, secret, &["status", "--json"])
            .await;
        for form in crate::support::secret_forms(secret) {
            for (what, text) in [("trace rotate", out.all()), ("status", status.all())] {
                assert!(!text.contains(&form), "{what} holds `{form}` of `{secret}`");
            }
        }
    }
}

#[tokio::test]
async fn a_redirect_location_is_shown_without_its_secrets() {
    let env = Env::new().await;
    let h = Hostile::start(|_| Answer {
        status: 302,
        headers: vec![(
            "location",
            format!(
                "https://user:pw-SENTINEL@evil.example/login/{}?client_secret=SEKRET%2Bs3cr%2F3t%3DXYZ+q&client_id={CLIENT_ID}#frag",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ODD_SECRET)
            ),
        )],
        body: Vec::new(),
        delay: Duration::ZERO,
    })
    .await;
    let cfg = hostile_config(&env, &h, "", "");
    let out = env.run_with_secret(&cfg, ODD_SECRET, &["rotate"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("redirect to https://evil.example/login/"),
        "{out}"
    );
    for form in encoded_forms()
        .into_iter()
        .chain(["pw-SENTINEL".to_string()])
    {
        assert!(!out.all().contains(&form), "holds `{form}`: {out}");
    }
}

#[tokio::test]
async fn control_characters_in_deepvue_detail_are_escaped() {
    let env = Env::new().await;
    let h = Hostile::start(|_| {
        Answer::json(
            401,
            serde_json::json!({"detail": "line1\nFORGED: line\u{1b}[31mred\r\u{7}"}),
        )
    })
    .await;
    let cfg = hostile_config(&env, &h, "", "");
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stdout.contains("line1\\nFORGED"), "{out}");
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("FORGED")),
        "{out}"
    );
    assert!(
        !out.all().contains('\u{1b}') && !out.all().contains('\u{7}'),
        "{out}"
    );
    let status = env.run(&cfg, &["status"]).await;
    assert!(!status.stdout.contains('\u{1b}'), "{status}");
    assert!(
        !status.stdout.lines().any(|l| l.starts_with("FORGED")),
        "{status}"
    );
}

// ---- 3. expiry is bounded by the token lifetime ----------------------------------------------

#[tokio::test]
async fn an_absurd_expiry_is_clamped_and_reported() {
    let env = Env::new().await;
    let h =
        Hostile::start(|_| token_answer("tok-far-future", "bearer", "9999-12-31T23:59:59Z")).await;
    let cfg = hostile_config(&env, &h, "", "");
    let out = env.run(&cfg, &["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let r = &json(&out)[0];
    assert_eq!(r["outcome"], "rotated", "{out}");
    let left = r["expires_in_secs"].as_i64().unwrap_or(i64::MAX);
    assert!(left <= 24 * 3600 + 300, "clamped to the lifetime: {out}");
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("9999-12-31T23:59:59Z"),
        "the report says so: {out}"
    );
    let text = env.run(&cfg, &["rotate", "--force"]).await;
    assert!(
        text.stdout.contains("WARNING") && text.stdout.contains("clamped"),
        "{text}"
    );
    let status = json(&env.run(&cfg, &["status", "--json"]).await);
    assert!(
        status[0]["expires_in_secs"].as_i64().unwrap_or(i64::MAX) <= 24 * 3600 + 300,
        "{status}"
    );
}

// ---- 4. a busy lock or a read-only store is not a false alarm --------------------------------

/// The config with short retry budgets (so a short lock_timeout is valid) and a webhook.
fn lock_config(env: &Env, rx: &Receiver) -> PathBuf {
    let rx_ca = env.path("rx-ca.pem");
    std::fs::write(&rx_ca, &rx.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    env.write_config(&format!(
        "{}[rotation]\nlock_timeout = \"3s\"\n\n[alerting]\nca_file = \"{}\"\n\n[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n\n{}",
        env.deepvue_section("retry_deadline = \"1s\"\nrequest_timeout = \"1s\""),
        rx_ca.display(),
        rx.url("/hook"),
        env.token_block("prod", "{ backend = \"env\" }")
    ))
}

fn hold_rotation_lock(env: &Env) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(env.store_dir("prod").join(".rotate.lock"))
        .unwrap_or_else(|e| panic!("lock file: {e}"));
    f.lock().unwrap_or_else(|e| panic!("flock: {e}"));
    f
}

#[tokio::test]
async fn a_fresh_token_behind_a_busy_lock_is_not_a_failure() {
    let env = Env::new().await;
    let rx = Receiver::start(&[("/hook", 200, "")]).await;
    let cfg = lock_config(&env, &rx);
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    let _held = hold_rotation_lock(&env);
    let out = env.run(&cfg, &["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let r = &json(&out)[0];
    assert_eq!(r["outcome"], "fresh", "{out}");
    assert_eq!(r["version"], "1", "{out}");
    assert!(
        r["expires_in_secs"].as_i64().unwrap_or_default() > 23 * 3600,
        "{out}"
    );
    // A token that is not due never waits for the lock: nothing to warn about.
    assert!(r["warnings"].as_array().is_none_or(Vec::is_empty), "{out}");
    assert!(rx.posts("/hook").is_empty(), "no alert for a fresh token");
    assert_eq!(env.calls(), 1);
}

#[tokio::test]
async fn a_due_token_behind_a_busy_lock_fails_with_the_time_left() {
    let env = Env::new().await;
    let rx = Receiver::start(&[("/hook", 200, "")]).await;
    let cfg = lock_config(&env, &rx);
    let now = Utc::now().trunc_subsecs(0);
    env.store("prod")
        .write(
            &doc_at(
                "tok-due",
                now - chrono::Duration::hours(22),
                now + chrono::Duration::hours(2),
            ),
            WriteMode::Create { lease: None },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _held = hold_rotation_lock(&env);
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("lock timeout"), "{out}");
    assert!(
        out.stdout.contains("the stored token expires in 1h5"),
        "the real time left: {out}"
    );
    assert_eq!(env.calls(), 0);
}

#[tokio::test]
async fn concurrent_failing_runs_alert_once() {
    let env = Env::new().await;
    // A slow receiver widens the window between one run's alert and its recorded state.
    let hook = Hostile::start(|_| Answer {
        status: 200,
        headers: Vec::new(),
        body: b"ok".to_vec(),
        delay: Duration::from_millis(400),
    })
    .await;
    let hook_ca = env.path("hook-ca.pem");
    std::fs::write(&hook_ca, &hook.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    let cfg = env.write_config(&format!(
        "{}[alerting]\nca_file = \"{}\"\n\n[[alerts]]\nkind = \"webhook\"\nurl = \"{}\"\n\n{}",
        env.deepvue_section(""),
        hook_ca.display(),
        hook.url("/hook"),
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    let runs = (0..5).map(|_| env.run_with_secret(&cfg, "wrong-secret-for-sure", &["rotate"]));
    let outs = futures::future::join_all(runs).await;
    for out in &outs {
        assert_eq!(out.code, 4, "{out}");
    }
    let triggers = hook
        .received("/hook")
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("\"trigger\""))
        .count();
    assert_eq!(triggers, 1, "one alert for one condition");
}

// ---- 5. a clock stepped back never holds renewal off ----------------------------------------

#[tokio::test]
async fn an_issued_at_in_the_future_does_not_hold_renewal_off() {
    let env = Env::new().await;
    let cfg = env.config();
    let now = Utc::now().trunc_subsecs(0);
    env.store("prod")
        .write(
            &doc_at(
                "tok-from-the-future",
                now + chrono::Duration::hours(2),
                now + chrono::Duration::hours(3),
            ),
            WriteMode::Create { lease: None },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = env.run(&cfg, &["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let r = &json(&out)[0];
    assert_eq!(r["outcome"], "rotated", "{out}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("issued_at"),
        "{out}"
    );
    assert_eq!(env.calls(), 1);
}

// ---- 6. no input panics the process ----------------------------------------------------------

#[tokio::test]
async fn absurd_durations_are_config_errors_not_panics() {
    let env = Env::new().await;
    for (section, key) in [
        ("deepvue", "retry_deadline"),
        ("deepvue", "request_timeout"),
        ("deepvue", "connect_timeout"),
        ("deepvue", "backoff_max"),
        ("rotation", "run_every"),
        ("rotation", "lock_timeout"),
        ("alerting", "repeat_every"),
        ("alerting", "escalate_before"),
    ] {
        let line = format!("{key} = \"300000000000y\"");
        let text = if section == "deepvue" {
            format!(
                "{}{}",
                env.deepvue_section(&line)
                    .replacen(&format!("{key} = \"50ms\""), "", 1)
                    .replacen(&format!("{key} = \"200ms\""), "", 1),
                env.token_block("prod", "{ backend = \"env\" }")
            )
        } else {
            format!(
                "{}[{section}]\n{line}\n\n{}",
                env.deepvue_section(""),
                env.token_block("prod", "{ backend = \"env\" }")
            )
        };
        let cfg = env.write_config(&text);
        for cmd in ["rotate", "check"] {
            let out = env.run(&cfg, &[cmd]).await;
            assert_eq!(out.code, 2, "{section}.{key} / {cmd}: {out}");
            assert!(
                out.all().contains(&format!("{section}.{key}")) && out.all().contains("at most"),
                "{section}.{key} / {cmd}: {out}"
            );
        }
    }
    assert_eq!(env.calls(), 0);
}

#[tokio::test]
async fn simulate_into_a_full_stdout_exits_cleanly() {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["simulate", "--listen", "127.0.0.1:0"])
        .kill_on_drop(true);
    let out = ends("simulate", run_into(cmd, dev_full())).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("stdout"), "{out}");
}

// ---- 9. URLs in messages, and strict URLs ----------------------------------------------------

#[tokio::test]
async fn urls_never_show_user_info_or_query_in_any_message() {
    let env = Env::new().await;
    let secretive = "https://user:SENTINEL-PW@127.0.0.1:9/hook?sig=SENTINEL-SIG#SENTINEL-FRAG";
    let cfg = env.write_config(&format!(
        "{}[[alerts]]\nkind = \"webhook\"\nurl = \"{secretive}\"\n\n{}",
        env.deepvue_section(""),
        env.token_block("prod", "{ backend = \"env\" }")
    ));
    let rotate = env
        .run_with_secret(&cfg, "wrong-secret-for-sure", &["rotate"])
        .await;
    let check = env.run(&cfg, &["check"]).await;
    for out in [&rotate, &check] {
        assert!(!out.all().contains("SENTINEL"), "{out}");
    }
    assert!(check.stdout.contains("https://127.0.0.1:9/hook"), "{check}");

    // A URL with a space or a control character is refused, not "fixed".
    for bad in ["https://hooks.example/a b", "https://hooks.example/a\\tb"] {
        let cfg = env.write_config(&format!(
            "{}[[alerts]]\nkind = \"webhook\"\nurl = \"{bad}\"\n\n{}",
            env.deepvue_section(""),
            env.token_block("prod", "{ backend = \"env\" }")
        ));
        let out = env.run(&cfg, &["rotate"]).await;
        assert_eq!(out.code, 2, "{bad}: {out}");
        assert!(out.stderr.contains("alerts[0].url"), "{bad}: {out}");
    }
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn an_aws_endpoint_url_never_shows_its_user_info() {
    let env = Env::new().await;
    let cfg = env.write_config(&format!(
        "{}[aws]\nendpoint_url = \"https://AKIAUSER:SENTINEL-PW@127.0.0.1:9/?X-Amz-Signature=SENTINEL-SIG\"\nregion = \"us-east-1\"\n\n[[tokens]]\nname = \"prod\"\ncredentials = {{ backend = \"env\" }}\nstore = {{ backend = \"aws\", secret_id = \"deepvue/token\" }}\n",
        env.deepvue_section(""),
    ));
    for cmd in ["rotate", "check"] {
        let mut c = env.command(&cfg, &[cmd]);
        c.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        let out = ends(cmd, run(c)).await;
        assert_ne!(out.code, 0, "{out}");
        assert!(!out.all().contains("SENTINEL"), "{cmd}: {out}");
    }
}

// ---- 10. one store per token, by identity ----------------------------------------------------

#[tokio::test]
async fn a_symlinked_alias_of_another_tokens_store_is_refused() {
    let env = Env::new().await;
    mkdir_private(&env.store_dir("a"));
    symlink(&env.store_dir("a"), &env.store_dir("b"));
    let cfg = env.write_config(&format!(
        "{}{}{}",
        env.deepvue_section(""),
        env.token_block("a", "{ backend = \"env\" }"),
        env.token_block("b", "{ backend = \"env\" }")
    ));
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("already used by another token"),
        "{out}"
    );
    assert_eq!(env.calls(), 0);
}

// ---- 11. lost output and malformed tokens ----------------------------------------------------

#[tokio::test]
async fn lost_output_is_an_error() {
    let env = Env::new().await;
    let cfg = env.config();
    assert_eq!(env.run(&cfg, &["rotate"]).await.code, 0);
    for args in [
        &["read", "prod"][..],
        &["read", "prod", "--json"],
        &["rotate"],
        &["rotate", "--json"],
        &["status"],
        &["status", "--json"],
        &["check"],
    ] {
        for sink in ["full", "closed pipe"] {
            let cmd = env.command(&cfg, args);
            let stdout = if sink == "full" {
                dev_full()
            } else {
                let (reader, writer) = std::io::pipe().unwrap_or_else(|e| panic!("pipe: {e}"));
                drop(reader);
                writer.into()
            };
            let out = run_into(cmd, stdout).await;
            assert_ne!(out.code, 0, "{args:?} into a {sink}: {out}");
            assert!(
                out.stderr.contains("cannot write to stdout"),
                "{args:?} into a {sink}: {out}"
            );
        }
    }
}

#[tokio::test]
async fn malformed_tokens_are_never_stored() {
    let env = Env::new().await;
    let expiry =
        deepvue_rotator::core::document::format_time(Utc::now() + chrono::Duration::hours(24));
    for (token, token_type) in [
        ("tok-with-bell-\u{7}", "bearer".to_string()),
        ("tök-non-ascii", "bearer".to_string()),
        ("tok-ok", "bearer\r\nX-Injected: y".to_string()),
        ("tok-ok", "b".repeat(60 * 1024)),
        ("tok-ok", "bearer2".to_string()),
    ] {
        let (t, tt, e) = (token.to_string(), token_type.clone(), expiry.clone());
        let h = Hostile::start(move |_| token_answer(&t, &tt, &e)).await;
        let cfg = hostile_config(&env, &h, "max_attempts = 1", "");
        let out = env.run(&cfg, &["rotate"]).await;
        assert_eq!(out.code, 1, "{token:?}/{}: {out}", token_type.len());
        assert!(out.stdout.contains("malformed"), "{out}");
        assert!(env.current("prod").await.is_none(), "nothing stored");
    }
}

// ---- Also: secret files, core dumps --------------------------------------------------------

#[tokio::test]
async fn credentials_files_must_be_private_and_ours() {
    let env = Env::new().await;
    let creds = env.path("creds.json");
    std::fs::write(
        &creds,
        serde_json::json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg = env.write_config(&format!(
        "{}{}",
        env.deepvue_section(""),
        env.token_block(
            "prod",
            &format!("{{ backend = \"file\", path = \"{}\" }}", creds.display())
        )
    ));
    chmod(&creds, 0o602);
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.contains("writable by group or others"), "{out}");
    chmod(&creds, 0o600);
    std::os::unix::fs::chown(&creds, Some(65534), None).unwrap_or_else(|e| panic!("{e}"));
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.contains("owned by uid 65534"), "{out}");
    assert_eq!(env.calls(), 0);
    std::os::unix::fs::chown(&creds, Some(rustix::process::geteuid().as_raw()), None)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = env.run(&cfg, &["rotate"]).await;
    assert_eq!(out.code, 0, "a private file of ours is fine: {out}");
}

#[tokio::test]
async fn core_dumps_are_off() {
    use tokio::io::AsyncBufReadExt;
    // Started with core dumps allowed: the binary itself must turn them off.
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -c unlimited && exec {BIN} simulate --listen 127.0.0.1:0"
        ))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let pid = child.id().unwrap_or_default();
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("simulate never started"))
        .unwrap_or_default()
        .unwrap_or_default();
    assert!(first.contains("listening"), "{first}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_default()
        .split_whitespace()
        .skip(4)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(core, ["0", "0"], "{limits}");
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[tokio::test]
async fn the_simulator_answers_any_scripted_ttl() {
    // ~200 billion years: fits an i64 of seconds, not a chrono duration. The answer's expiry
    // is beyond what RFC 3339 can write, so the rotator falls back to issue time + 24h.
    let env = Env::with(deepvue_rotator::simulator::Behavior {
        token_ttl_secs: 6_311_520_000_000_000_000,
        ..Default::default()
    })
    .await;
    let out = env.run(&env.config(), &["rotate", "--json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let r = &json(&out)[0];
    assert_eq!(r["outcome"], "rotated", "{out}");
    assert!(
        r["expires_in_secs"].as_i64().unwrap_or(i64::MAX) <= 24 * 3600 + 300,
        "{out}"
    );
}
