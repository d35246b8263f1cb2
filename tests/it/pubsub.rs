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

#[tokio::test]
async fn pubsub_push_rotates_once_per_verified_secret_rotate() {
    deepvue_rotator::support::tls::install_default_provider();
    let env = Env::new().await;
    let gcp = Gcp::start().await;
    let (creds, token_secret) = gcp.provision().await;
    let rx = Receiver::start(&[("/oauth2/v3/certs", 200, &jwks())]).await;
    let rx_ca = env.path("jwks-ca.pem");
    std::fs::write(&rx_ca, &rx.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let cfg = env.write_config(&format!(
        "{}{}[rotation]\nmin_interval = \"1s\"\n\n[daemon]\nlisten = \"127.0.0.1:{port}\"\nschedule = false\n\n[daemon.pubsub]\naudience = \"{AUDIENCE}\"\nservice_account = \"{PUSH_SA}\"\njwks_url = \"{}\"\nca_file = \"{}\"\n\n{}",
        env.deepvue_section(""),
        gcp.section(),
        rx.url("/oauth2/v3/certs"),
        rx_ca.display(),
        token_block("prod", &creds, &token_secret, ", keep_versions = 5")
    ));
    // A token that is already due (1 h left, renew_before 12 h): a daemon that schedules would
    // mint at once; this one waits for a push, which rotates anyway (forced).
    env.sim.set_behavior(deepvue_rotator::simulator::Behavior {
        token_ttl_secs: 3600,
        ..Default::default()
    });
    let out = crate::support::run(gcp.command(&env, &cfg, &["rotate"])).await;
    assert_eq!(out.code, 0, "{out}");
    env.sim
        .set_behavior(deepvue_rotator::simulator::Behavior::default());
    // Documents keep whole seconds: publish the notification in a later second than that mint.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let d = Daemon::start(&gcp, &env, &cfg, port, "trace").await;
    let notified = format!("projects/123456789012/secrets/{token_secret}");
    let versions = async || gcp.versions(&token_secret).await.len();
    assert_eq!(versions().await, 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.calls(),
        1,
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
        let got = post(&d, bearer.as_deref(), &msg).await;
        assert_eq!(got, *want, "{what}\n{}", d.log());
    }
    assert_eq!(versions().await, 1, "refused pushes do nothing");
    assert_eq!(env.calls(), 1);

    // Other events and other secrets: 204, nothing done.
    let add = push_body("SECRET_VERSION_ADD", &notified, chrono::Utc::now());
    assert_eq!(post(&d, Some(&good), &add).await, 204);
    let other = push_body(
        "SECRET_ROTATE",
        "projects/123456789012/secrets/someone-elses-secret",
        chrono::Utc::now(),
    );
    assert_eq!(post(&d, Some(&good), &other).await, 204);
    assert_eq!(versions().await, 1);

    // A valid SECRET_ROTATE: one new version, although the token was fresh.
    let started = Instant::now();
    assert_eq!(post(&d, Some(&good), &msg).await, 200, "{}", d.log());
    let latency = started.elapsed();
    assert_eq!(versions().await, 2, "{}", d.log());
    assert_eq!(env.calls(), 2);
    eprintln!("push → new version: {} ms", latency.as_millis());

    // Redelivered (same publishTime, rotation already done): acknowledged, nothing minted.
    assert_eq!(post(&d, Some(&good), &msg).await, 200);
    assert_eq!(versions().await, 2);
    assert_eq!(env.calls(), 2);

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
