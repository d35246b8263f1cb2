//! `POST /pubsub` through the real daemon binary: Secret Manager `SECRET_ROTATE` pushes with
//! OIDC tokens signed by a test RSA key, whose JWKS a local HTTPS server serves (the daemon
//! trusts it through `[daemon.pubsub] ca_file`), rotating a `gcp` store on the Secret Manager
//! fake (or real Secret Manager, see `gcp.rs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::gcp::{Gcp, rsa_key, token_block};
use crate::receiver::Receiver;
use crate::support::{CLIENT_SECRET, Env, free_port};

const AUDIENCE: &str = "https://deepvue-rotator-abc-uc.a.run.app/pubsub";
const PUSH_SA: &str = "secret-rotate-push@my-project.iam.gserviceaccount.com";
const KID: &str = "it-kid-1";

struct Daemon {
    child: tokio::process::Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Daemon {
    async fn start(gcp: &Gcp, env: &Env, cfg: &Path, port: u16, rust_log: &str) -> Daemon {
        let log = env.path(&format!("daemon-{port}.log"));
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = gcp.command(env, cfg, &["--log-format", "json", "daemon"]);
        cmd.env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("PORT")
            .env("RUST_LOG", rust_log)
            .stdout(std::process::Stdio::null())
            .stderr(file);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn daemon: {e}"));
        let d = Daemon { child, port, log };
        let started = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(d.url("/healthz")).await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the daemon did not serve /healthz:\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        d
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A JWT signed with the test key (`kid` = KID), with `claims` over sensible defaults.
fn token(claims: Value) -> String {
    let (kp, _, _) = rsa_key();
    let now = chrono::Utc::now().timestamp();
    let mut c = json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "1234567890",
        "sub": "1234567890",
        "email": PUSH_SA,
        "email_verified": true,
        "iat": now - 5,
        "exp": now + 3600,
    });
    if let (Some(obj), Some(over)) = (c.as_object_mut(), claims.as_object()) {
        for (k, v) in over {
            obj.insert(k.clone(), v.clone());
        }
    }
    let header = json!({"alg": "RS256", "kid": KID, "typ": "JWT"});
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    let mut sig = vec![0; kp.public().modulus_len()];
    kp.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut sig,
    )
    .unwrap_or_else(|e| panic!("sign: {e}"));
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn jwks() -> String {
    let (_, n, e) = rsa_key();
    // A leading zero byte on n, as some JWKS publishers send: must still verify.
    let mut padded = vec![0u8];
    padded.extend(&n);
    json!({"keys": [
        {"kid": "other-kid", "kty": "RSA", "alg": "RS256", "use": "sig", "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"},
        {"kid": KID, "kty": "RSA", "alg": "RS256", "use": "sig", "n": URL_SAFE_NO_PAD.encode(padded), "e": URL_SAFE_NO_PAD.encode(e)},
    ]})
    .to_string()
}

fn push_body(event: &str, secret: &str, publish_time: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "message": {
            "attributes": {
                "eventType": event,
                "secretId": secret,
                "dataFormat": "JSON_API_V1",
                "timestamp": publish_time.to_rfc3339(),
            },
            "data": STANDARD.encode(json!({"name": secret}).to_string()),
            "messageId": format!("{}", rand::random::<u32>()),
            "publishTime": publish_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        },
        "subscription": "projects/my-project/subscriptions/deepvue-rotator-push",
    })
}

/// A daemon config with `[daemon.pubsub]` trusting `jwks_url` (its CA in `ca`), `min_interval`.
fn pubsub_config(
    env: &Env,
    gcp: &Gcp,
    port: u16,
    min_interval: &str,
    (jwks_url, ca): (&str, &Path),
    creds: &str,
    token_secret: &str,
) -> PathBuf {
    env.write_config(&format!(
        "{}{}[rotation]\nmin_interval = \"{min_interval}\"\n\n[daemon]\nlisten = \"127.0.0.1:{port}\"\nschedule = false\n\n[daemon.pubsub]\naudience = \"{AUDIENCE}\"\nservice_account = \"{PUSH_SA}\"\njwks_url = \"{jwks_url}\"\nca_file = \"{}\"\n\n{}",
        env.deepvue_section(""),
        gcp.section(),
        ca.display(),
        token_block("prod", creds, token_secret, ", keep_versions = 5")
    ))
}

/// A push body with this message id and no publishTime (what a replayer would send).
fn bare_push(secret: &str, id: &str) -> Value {
    json!({"message": {"attributes": {"eventType": "SECRET_ROTATE", "secretId": secret}, "messageId": id}})
}

async fn post_answer(d: &Daemon, bearer: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(d.url("/pubsub")).json(body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /pubsub: {e}\n{}", d.log()));
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or_default())
}

async fn metric(d: &Daemon, line_has: &[&str]) -> f64 {
    let text = reqwest::get(d.url("/metrics"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| line_has.iter().all(|h| l.contains(h)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn post(d: &Daemon, bearer: Option<&str>, body: &Value) -> u16 {
    let mut req = reqwest::Client::new().post(d.url("/pubsub")).json(body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("POST /pubsub: {e}\n{}", d.log()))
        .status()
        .as_u16()
}

/// A simulator, the GCP store with credentials and an empty token secret, a JWKS endpoint,
/// and a push daemon's config with `min_interval` (the daemon is not started).
struct Setup {
    env: Env,
    gcp: Gcp,
    token_secret: String,
    port: u16,
    cfg: PathBuf,
    _rx: Receiver,
}

impl Setup {
    async fn start(min_interval: &str) -> Setup {
        deepvue_rotator::support::tls::install_default_provider();
        let env = Env::new().await;
        let gcp = Gcp::start().await;
        let (creds, token_secret) = gcp.provision().await;
        let rx = Receiver::start(&[("/oauth2/v3/certs", 200, &jwks())]).await;
        let rx_ca = env.path("jwks-ca.pem");
        std::fs::write(&rx_ca, &rx.ca_pem).unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let cfg = pubsub_config(
            &env,
            &gcp,
            port,
            min_interval,
            (&rx.url("/oauth2/v3/certs"), &rx_ca),
            &creds,
            &token_secret,
        );
        Setup {
            env,
            gcp,
            token_secret,
            port,
            cfg,
            _rx: rx,
        }
    }
}

#[tokio::test]
async fn pubsub_push_rotates_once_per_verified_secret_rotate() {
    let Setup {
        env,
        gcp,
        token_secret,
        port,
        cfg,
        _rx,
    } = Setup::start("1s").await;
    // A token that is already due (1 h left, renew_before 12 h; minted 23 h ago, so no
    // min_interval holds a push back): a daemon that schedules would mint at once; this one
    // waits for a push, which rotates anyway (forced).
    {
        use secrecy::ExposeSecret;
        let seed = crate::scenarios::doc_left("simtok_seeded", 1).to_json();
        gcp.add(&token_secret, seed.expose_secret().as_bytes())
            .await;
    }
    let d = Daemon::start(&gcp, &env, &cfg, port, "trace").await;
    // The name Secret Manager itself gives the secret (its project as a number), as its
    // notifications carry it.
    let notified = gcp.secret(&token_secret).await.name;
    let versions = async || gcp.versions(&token_secret).await.len();
    assert_eq!(versions().await, 1);
    // The daemon has read the store (its expiry gauge shows the token) and let it be.
    let started = Instant::now();
    while metric(
        &d,
        &[
            "deepvue_rotator_token_expiry_timestamp_seconds",
            "token=\"prod\"",
        ],
    )
    .await
        == 0.0
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the daemon never read the store\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        env.calls(),
        0,
        "schedule = false: the daemon does not mint a due token by itself"
    );

    // Refused, nothing done: no token, wrong audience / issuer / email / unverified email,
    // expired, unsigned, a signature Cloud Run removed, an unknown key.
    let msg = push_body("SECRET_ROTATE", &notified, chrono::Utc::now());
    let good = token(json!({}));
    let (h, c, _) = {
        let mut p = good.split('.');
        (
            p.next().unwrap_or_default().to_string(),
            p.next().unwrap_or_default().to_string(),
            (),
        )
    };
    let unsigned_header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": KID}).to_string());
    let now = chrono::Utc::now().timestamp();
    let bad: Vec<(&str, Option<String>, u16)> = vec![
        ("no token", None, 401),
        ("not a JWT", Some("garbage".into()), 401),
        ("wrong audience", Some(token(json!({"aud": "https://elsewhere.example/pubsub"}))), 401),
        ("wrong issuer", Some(token(json!({"iss": "https://evil.example"}))), 401),
        ("wrong email", Some(token(json!({"email": "someone@my-project.iam.gserviceaccount.com"}))), 403),
        ("email not verified", Some(token(json!({"email_verified": false}))), 403),
        ("expired", Some(token(json!({"exp": now - 600, "iat": now - 4200}))), 401),
        ("unsigned (alg none)", Some(format!("{unsigned_header}.{c}.")), 401),
        ("signature removed", Some(format!("{h}.{c}.SIGNATURE_REMOVED_BY_GOOGLE")), 401),
        ("tampered claims", Some(format!("{h}.{}.{}", URL_SAFE_NO_PAD.encode(json!({"iss":"https://accounts.google.com","aud":AUDIENCE,"email":PUSH_SA,"email_verified":true,"exp":now+3600,"iat":now,"x":1}).to_string()), good.rsplit('.').next().unwrap_or_default())), 401),
    ];
    for (what, bearer, want) in &bad {
        let (got, body) = post_answer(&d, bearer.as_deref(), &msg).await;
        assert_eq!(got, *want, "{what}\n{}", d.log());
        // The reason is for the log; an unauthenticated caller learns nothing more.
        let generic = if *want == 403 {
            "forbidden"
        } else {
            "unauthorized"
        };
        assert_eq!(body, json!({"error": generic}), "{what}");
    }
    assert_eq!(versions().await, 1, "refused pushes do nothing");
    assert_eq!(env.calls(), 0);

    // Other events and other secrets: 204, nothing done.
    let add = push_body("SECRET_VERSION_ADD", &notified, chrono::Utc::now());
    assert_eq!(post(&d, Some(&good), &add).await, 204);
    let number = notified.split('/').nth(1).unwrap_or_default().to_string();
    for other in [
        format!("projects/{number}/secrets/someone-elses-secret"),
        // Same secret id, another project: not ours.
        format!("projects/999/secrets/{token_secret}"),
        // A bare id matches nothing: the resource name is compared whole.
        token_secret.clone(),
    ] {
        let push = push_body("SECRET_ROTATE", &other, chrono::Utc::now());
        assert_eq!(post(&d, Some(&good), &push).await, 204, "{other}");
    }
    assert_eq!(versions().await, 1);
    assert_eq!(env.calls(), 0);

    // A valid SECRET_ROTATE: one new version, although the token was fresh.
    let started = Instant::now();
    assert_eq!(post(&d, Some(&good), &msg).await, 200, "{}", d.log());
    let latency = started.elapsed();
    assert_eq!(versions().await, 2, "{}", d.log());
    assert_eq!(env.calls(), 1);
    eprintln!("push → new version: {} ms", latency.as_millis());

    // Redelivered (the same message): acknowledged as a duplicate, nothing minted.
    let (code, body) = post_answer(&d, Some(&good), &msg).await;
    assert_eq!((code, body["outcome"].as_str()), (200, Some("duplicate")));
    assert_eq!(versions().await, 2);
    assert_eq!(env.calls(), 1);

    // Replayed: the token is signed, the body is not. Thirty new message ids without a
    // publishTime right after a rotation: acknowledged and counted, never acted on.
    for i in 0..30 {
        let (code, body) = post_answer(
            &d,
            Some(&good),
            &bare_push(&notified, &format!("replay-{i}")),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert!(
            matches!(body["outcome"].as_str(), Some("rate_limited" | "throttled")),
            "{body}"
        );
    }
    assert_eq!(versions().await, 2, "thirty replays, no version");
    assert_eq!(env.calls(), 1, "thirty replays, no mint");
    assert!(metric(&d, &["pubsub_pushes", "rate_limited"]).await >= 1.0);

    // /metrics counts the pushed rotation like a scheduled one.
    let text = reqwest::get(d.url("/metrics"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.contains("outcome=\"rotated\"") && l.contains("token=\"prod\"")),
        "{text}"
    );

    // Trace-level logs: no minted token, client secret or bearer token.
    let log = d.log();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace logging is on"
    );
    let mut secrets = env.sim.issued_tokens();
    secrets.push(CLIENT_SECRET.to_string());
    secrets.push(good.rsplit('.').next().unwrap_or_default().to_string());
    for s in &secrets {
        assert!(
            !log.contains(s.as_str()),
            "a secret ({} chars) is in the daemon log",
            s.len()
        );
    }
    gcp.cleanup().await;
}

#[tokio::test]
async fn a_push_never_mints_within_min_interval_of_the_last_mint() {
    let Setup {
        env,
        gcp,
        token_secret,
        port,
        cfg,
        _rx,
    } = Setup::start("1h").await;
    let out = crate::support::run(gcp.command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    let d = Daemon::start(&gcp, &env, &cfg, port, "info").await;
    let notified = gcp.secret(&token_secret).await.name;
    // Minted a moment ago, min_interval 1 h: a push asks, and is told it is throttled.
    let (code, body) = post_answer(&d, Some(&token(json!({}))), &bare_push(&notified, "p1")).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("throttled")),
        "{body}"
    );
    assert_eq!(gcp.versions(&token_secret).await.len(), 1);
    assert_eq!(
        env.calls(),
        1,
        "no mint within min_interval, whatever is pushed"
    );
    assert_eq!(metric(&d, &["pubsub_pushes", "throttled"]).await, 1.0);
    gcp.cleanup().await;
}

#[tokio::test]
async fn a_failing_key_endpoint_is_not_hammered_and_its_url_and_forged_log_lines_stay_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    deepvue_rotator::support::tls::install_default_provider();
    let env = Env::new().await;
    let gcp = Gcp::start().await;
    let (creds, token_secret) = gcp.provision().await;
    // The key endpoint serves the keys once (stale at once: max-age=0), then fails.
    let (fetches, down) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let keys = jwks();
    let h = {
        let (fetches, down) = (fetches.clone(), down.clone());
        crate::hostile::Hostile::start(move |_| {
            fetches.fetch_add(1, Ordering::SeqCst);
            if down.load(Ordering::SeqCst) {
                return crate::hostile::Answer::json(500, json!({"error": "down"}));
            }
            let mut a =
                crate::hostile::Answer::json(200, serde_json::from_str(&keys).unwrap_or_default());
            a.headers.push(("cache-control", "max-age=0".into()));
            a
        })
        .await
    };
    let ca = env.path("jwks-ca.pem");
    std::fs::write(&ca, &h.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let jwks_url = format!("https://{}/certs?key=KEYQUERY-SENTINEL-77", h.addr);
    let cfg = pubsub_config(
        &env,
        &gcp,
        port,
        "1s",
        (&jwks_url, &ca),
        &creds,
        &token_secret,
    );
    // Text logs: where a forged line would show.
    let log = env.path("daemon-text.log");
    let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = gcp.command(&env, &cfg, &["--log-format", "text", "daemon"]);
    cmd.env_remove("PORT")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(file);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{e}"));
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let started = Instant::now();
    while reqwest::get(url("/healthz"))
        .await
        .ok()
        .map(|r| r.status().as_u16())
        != Some(200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let notified = gcp.secret(&token_secret).await.name;
    let client = reqwest::Client::new();
    let push = |bearer: String, id: String| {
        let client = client.clone();
        let body = bare_push(&notified, &id);
        let u = url("/pubsub");
        async move {
            let r = client.post(u).bearer_auth(bearer).json(&body).send().await;
            let r = r.unwrap_or_else(|e| panic!("{e}"));
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    // The keys are fetched once; a genuine push rotates.
    let (code, _) = push(token(json!({})), "first".into()).await;
    assert_eq!(code, 200);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // Now the endpoint fails. A hundred junk tokens (an unknown kid carrying a forged log
    // line and ANSI escapes) and a genuine push: the last good keys still verify, the
    // failing endpoint is asked only while its backoff allows, and nothing is hammered.
    down.store(true, Ordering::SeqCst);
    let forged = "kid\nINFO FORGED-LINE the rotator was hacked\x1b[31m";
    let junk = {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": forged}).to_string());
        let good = token(json!({}));
        let mut parts = good.splitn(2, '.');
        let _ = parts.next();
        format!("{header}.{}", parts.next().unwrap_or_default())
    };
    let mut bodies = Vec::new();
    for i in 0..100 {
        let (code, body) = push(junk.clone(), format!("junk-{i}")).await;
        assert!(matches!(code, 401 | 503), "{code} {body}");
        bodies.push(body);
    }
    let (code, body) = push(token(json!({})), "second".into()).await;
    assert_ne!(
        code, 503,
        "the last good keys still verify a genuine push: {body}"
    );
    let asked = fetches.load(Ordering::SeqCst);
    assert!(
        asked <= 4,
        "the failing key endpoint was asked {asked} times for 101 requests"
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for b in &bodies {
        assert!(
            !b.contains("KEYQUERY"),
            "the key URL's query reached a caller: {b}"
        );
    }
    assert!(
        !text.contains("KEYQUERY"),
        "the key URL's query is in the log"
    );
    assert!(!text.contains('\x1b'), "an escape sequence reached the log");
    assert!(
        !text.lines().any(|l| l.starts_with("INFO FORGED-LINE")),
        "a forged log line:\n{text}"
    );
    let refusals = text.matches("pubsub push refused").count();
    assert!(
        (1..=3).contains(&refusals),
        "refusals are logged at most once per interval: {refusals} lines"
    );
    gcp.cleanup().await;
}

/// A push that arrives while the scheduler is rotating the same token is told to come back
/// (429 `busy`, Pub/Sub redelivers) and mints nothing; its redelivery after the rotation finds
/// the token rotated after it was published. One token is never rotated by two at once.
#[tokio::test]
async fn a_push_while_the_scheduler_rotates_the_token_is_busy_and_mints_nothing() {
    let Setup {
        env,
        gcp,
        token_secret,
        port,
        cfg,
        _rx,
    } = Setup::start("1s").await;
    // The scheduler on: nothing stored, so it mints at once; Deepvue answers slowly, and the
    // push comes in meanwhile.
    let text = std::fs::read_to_string(&cfg)
        .unwrap_or_default()
        .replace("schedule = false\n", "");
    std::fs::write(&cfg, text).unwrap_or_else(|e| panic!("{e}"));
    env.sim.set_behavior(deepvue_rotator::simulator::Behavior {
        latency_ms: 4000,
        ..Default::default()
    });
    // Published before the scheduler's mint began (whole seconds in the stored document: a
    // time taken after the mint started could fall in the next second).
    let published = chrono::Utc::now();
    let d = Daemon::start(&gcp, &env, &cfg, port, "info").await;
    let started = Instant::now();
    while env.calls() < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the scheduler never called Deepvue\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let notified = gcp.secret(&token_secret).await.name;
    let msg = push_body("SECRET_ROTATE", &notified, published);
    let good = token(json!({}));
    let (code, body) = post_answer(&d, Some(&good), &msg).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (429, Some("busy")),
        "{body}\n{}",
        d.log()
    );
    // The scheduled rotation lands: one version, one mint.
    let versions = async || gcp.versions(&token_secret).await.len();
    let started = Instant::now();
    while versions().await < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the scheduled rotation never landed\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.sim
        .set_behavior(deepvue_rotator::simulator::Behavior::default());
    // Pub/Sub redelivers the same message: the token was rotated after it was published.
    let (code, body) = post_answer(&d, Some(&good), &msg).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("already_rotated")),
        "{body}\n{}",
        d.log()
    );
    assert_eq!(versions().await, 1);
    assert_eq!(
        env.calls(),
        1,
        "one mint: the push never rotated beside the scheduler"
    );
    gcp.cleanup().await;
}
