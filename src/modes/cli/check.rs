//! `check`: Deepvue's production checklist, evaluated against the config and the live
//! endpoints, without minting. PASS / FAIL / UNKNOWN / WARN per item; exit 1 on any FAIL, 2 when
//! the config does not load (the broken item fails, the rest are UNKNOWN). WARN names a
//! trade-off the config chose (`publish_api_key`) and does not change the exit code.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Serialize;

use super::{emit, json_text};
use crate::app::App;
use crate::config::{self, Config};
use crate::core::credentials::Custody;
use crate::core::error::EXIT_CONFIG;
use crate::engine::rotator::{Job, Rotator};
use crate::support::text::{shown, shown_url};

/// One line of `check`: an item of Deepvue's production checklist, evaluated.
#[derive(Debug, Serialize)]
pub(super) struct CheckItem {
    /// Stable id of the checklist item.
    pub item: &'static str,
    /// What it checks, for humans.
    pub check: String,
    /// `pass`, `fail`, `unknown`, or `warn` (a trade-off the config chose: no failure).
    pub status: &'static str,
    /// Why.
    pub detail: String,
}

fn item(
    item: &'static str,
    check: impl Into<String>,
    status: &'static str,
    detail: impl Into<String>,
) -> CheckItem {
    CheckItem {
        item,
        check: check.into(),
        status,
        detail: detail.into(),
    }
}

const CHECK_HTTPS: &str = "every endpoint is HTTPS";
const CHECK_CREDS: &str = "credentials come from env or a secret manager";
const CHECK_INLINE: &str = "no credential in the config";
const CHECK_EGRESS: &str = "egress IP is in expected_ips";
const CHECK_REFRESH: &str = "tokens are cached and refreshed ahead";
const CHECK_ALERTS: &str = "alerting is configured and reachable";
const CHECK_STORES: &str = "stores are reachable and writable";
const CHECK_TLS: &str = "Deepvue TLS handshake";
const CHECK_API_KEY: &str = "the client secret stays with the rotator";

fn print_checks(items: &[CheckItem], json: bool) -> u8 {
    let failed = items.iter().filter(|i| i.status == "fail").count();
    let unknown = items.iter().filter(|i| i.status == "unknown").count();
    let text = if json {
        json_text(&items)
    } else {
        let mut out: String = items
            .iter()
            .map(|i| {
                format!(
                    "{:<7}  {}: {}\n",
                    i.status.to_uppercase(),
                    i.check,
                    crate::support::text::escape_control(&i.detail)
                )
            })
            .collect();
        let warned = items.iter().filter(|i| i.status == "warn").count();
        let warnings = if warned > 0 {
            format!(", {warned} warning(s)")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{} check(s): {failed} failed, {unknown} unknown{warnings}\n",
            items.len()
        ));
        out
    };
    emit(text.as_bytes(), u8::from(failed > 0))
}

/// `check` on a config that does not load: the broken item fails, the rest are unknown.
pub(super) fn invalid_config(e: &config::ConfigError, json: bool) -> u8 {
    use config::ProblemCategory::*;
    let (failing, name) = match e.category {
        InlineSecret => ("no-inline-secrets", CHECK_INLINE),
        InsecureEndpoint => ("https", CHECK_HTTPS),
        Invalid => ("config", "config is valid"),
    };
    let mut items = vec![item(failing, name, "fail", e.to_string())];
    for (id, name) in [
        ("config", "config is valid"),
        ("https", CHECK_HTTPS),
        ("credentials", CHECK_CREDS),
        ("no-inline-secrets", CHECK_INLINE),
        ("egress", CHECK_EGRESS),
        ("refresh-ahead", CHECK_REFRESH),
        ("alerting", CHECK_ALERTS),
        ("stores", CHECK_STORES),
        ("deepvue-tls", CHECK_TLS),
    ] {
        if id != failing {
            items.push(item(
                id,
                name,
                "unknown",
                "not evaluated: the config does not load",
            ));
        }
    }
    print_checks(&items, json).max(EXIT_CONFIG)
}

/// The checklist for a config that loaded: one item (or one per token / sink) per line of
/// Deepvue's production checklist.
pub(super) async fn run(app: App, json: bool) -> u8 {
    let config = &app.config;
    let mut items = vec![item(
        "config",
        "config is valid",
        "pass",
        format!(
            "{} parsed and validated; {} token(s)",
            config.origin,
            config.tokens.len()
        ),
    )];
    items.push(https(config));
    items.extend(credentials(&app.jobs).await);
    items.extend(published_api_keys(config));
    items.push(item(
        "no-inline-secrets",
        CHECK_INLINE,
        "pass",
        "no secret-looking key holds a value in the config",
    ));
    items.push(egress(&app).await);
    items.extend(refresh_ahead(config));
    items.extend(alerting(&app.rotator).await);
    items.extend(stores(&app.jobs).await);
    items.push(deepvue_tls(&app.rotator, config).await);
    print_checks(&items, json)
}

/// HTTPS everywhere. Inline URLs were validated at load; referenced ones are resolved now.
fn https(config: &Config) -> CheckItem {
    let mut insecure = Vec::new();
    let mut notes = vec![format!("deepvue {}", shown(&config.deepvue.base_url))];
    for (name, s) in &config.alerting.sinks {
        if let Some(u) = s.inline_url() {
            notes.push(format!("{name} {}", shown_url(u)));
        }
        if let Some(r) = s.url_ref() {
            match r.resolve() {
                Ok(u) if u.expose_secret().starts_with("https://") => {
                    notes.push(format!("{name} (from {})", r.describe()))
                }
                Ok(_) => insecure.push(format!(
                    "alert sink {name}: the URL in {} is not https://",
                    r.describe()
                )),
                Err(e) => insecure.push(format!("alert sink {name}: {e}")),
            }
        }
    }
    notes.extend(config.backends.endpoint_notes());
    if insecure.is_empty() {
        item(
            "https",
            CHECK_HTTPS,
            "pass",
            format!(
                "HTTPS with verified certificates, TLS >= 1.2: {}",
                notes.join(", ")
            ),
        )
    } else {
        item("https", CHECK_HTTPS, "fail", insecure.join("; "))
    }
}

/// Credentials: where from, and readable now.
async fn credentials(jobs: &[Job]) -> Vec<CheckItem> {
    let mut items = Vec::new();
    for job in jobs {
        let name = &job.name;
        let check = format!("{CHECK_CREDS} (token `{name}`)");
        let source = job.credentials.describe();
        let loose = job.credentials.custody() == Custody::LooseFile;
        items.push(match (loose, job.credentials.load().await) {
            (_, Err(e)) => item("credentials", check, "fail", e.to_string()),
            (true, Ok(_)) => item(
                "credentials",
                check,
                "fail",
                format!(
                    "read from a loose file ({source}); keep them in environment variables or \
                     a secret manager"
                ),
            ),
            (false, Ok(_)) => item("credentials", check, "pass", format!("read from {source}")),
        });
    }
    items
}

/// Tokens whose stores also hold the client secret (`publish_api_key`): a warning naming the
/// trade-off, one per token.
fn published_api_keys(config: &Config) -> Vec<CheckItem> {
    config
        .tokens
        .iter()
        .filter(|t| t.publish_api_key)
        .map(|t| {
            let stores: Vec<String> = t
                .all_stores()
                .map(|s| {
                    let (backend, id) = s.identity();
                    format!("{backend} `{id}`")
                })
                .collect();
            item(
                "api-key",
                CHECK_API_KEY,
                "warn",
                format!(
                    "token `{}` publishes the client secret as `x_api_key` in {}: whoever can \
                     read the token there holds a long-lived credential that can mint tokens \
                     (from a whitelisted IP) until the secret is changed at Deepvue. Grant read \
                     only to the applications that call Deepvue, or set publish_api_key = false \
                     and give them the secret on its own",
                    t.name,
                    stores.join(", ")
                ),
            )
        })
        .collect()
}

/// Egress: the IP this host's calls leave from, against `expected_ips`.
async fn egress(app: &App) -> CheckItem {
    let e = &app.config.egress;
    if e.expected.is_empty() {
        return item(
            "egress",
            CHECK_EGRESS,
            "fail",
            "egress.expected_ips is not set: drift cannot be seen before Deepvue answers 403",
        );
    }
    if !e.probe {
        return item("egress", CHECK_EGRESS, "unknown", "egress.probe = false");
    }
    match app.rotator.pass().egress().await {
        Some(r) if r.observed.is_empty() => item("egress", CHECK_EGRESS, "unknown", r.summary()),
        Some(r) if !r.outside_expected().is_empty() => {
            item("egress", CHECK_EGRESS, "fail", r.summary())
        }
        Some(r) => item("egress", CHECK_EGRESS, "pass", r.summary()),
        None => item(
            "egress",
            CHECK_EGRESS,
            "unknown",
            "the Deepvue HTTP client could not be built",
        ),
    }
}

/// Refresh ahead of expiry: `renew_before` against the lifetime and the schedule.
fn refresh_ahead(config: &Config) -> Vec<CheckItem> {
    config
        .tokens
        .iter()
        .map(|t| {
            let rb = t.policy.renew_before;
            let check = format!("{CHECK_REFRESH} (token `{}`)", t.name);
            let rb_h = humantime::format_duration(rb);
            if rb < Duration::from_secs(3600) {
                return item(
                    "refresh-ahead",
                    check,
                    "fail",
                    format!("renew_before = {rb_h} leaves under an hour for retries and alerts"),
                );
            }
            match config.run_every {
                Some(every) if rb < every.saturating_mul(2) => item(
                    "refresh-ahead",
                    check,
                    "fail",
                    format!(
                        "renew_before = {rb_h} but the job runs every {}: at least two runs \
                         must fall inside the renewal window",
                        humantime::format_duration(every)
                    ),
                ),
                Some(every) => item(
                    "refresh-ahead",
                    check,
                    "pass",
                    format!(
                        "tokens are reused until {rb_h} before expiry; runs every {} give {} \
                         chances to renew",
                        humantime::format_duration(every),
                        rb.as_secs() / every.as_secs().max(1)
                    ),
                ),
                None => item(
                    "refresh-ahead",
                    check,
                    "unknown",
                    format!(
                        "renew_before = {rb_h} is sane against the 24h lifetime; set \
                         rotation.run_every to the schedule so it can be checked against it"
                    ),
                ),
            }
        })
        .collect()
}

/// Alerting: a sink configured, and each one reachable.
async fn alerting(rotator: &Rotator) -> Vec<CheckItem> {
    let mut items = Vec::new();
    if rotator.alerter().is_empty() {
        items.push(item(
            "alerting",
            CHECK_ALERTS,
            "fail",
            "no [[alerts]] sink configured: a 403 or a failing rotation would only reach the logs",
        ));
    }
    for (name, r) in rotator.alerter().check().await {
        let check = format!("{CHECK_ALERTS} (sink {name})");
        items.push(match r {
            Ok(d) => item("alerting", check, "pass", d),
            Err(e) => item("alerting", check, "fail", e),
        });
    }
    items
}

/// Stores: reachable and writable, as each backend proves it.
async fn stores(jobs: &[Job]) -> Vec<CheckItem> {
    let mut items = Vec::new();
    for job in jobs {
        // The primary, then every replica (fan-out), one item each.
        for (i, parts) in std::iter::once(&job.store).chain(&job.replicas).enumerate() {
            let role = if i == 0 { "" } else { ", replica" };
            let check = format!("{CHECK_STORES} (token `{}`{role})", job.name);
            let tokens = &parts.tokens;
            items.push(match tokens.check().await {
                Ok(()) => item(
                    "stores",
                    check,
                    "pass",
                    format!(
                        "{} store `{}` reachable and writable",
                        tokens.backend(),
                        tokens.secret_id()
                    ),
                ),
                Err(e) => item("stores", check, "fail", e.to_string()),
            });
        }
    }
    items
}

/// Deepvue's TLS: a verified handshake, nothing minted.
async fn deepvue_tls(rotator: &Rotator, config: &Config) -> CheckItem {
    match rotator.client().await {
        Ok(client) => match client.handshake().await {
            Ok(status) => item(
                "deepvue-tls",
                CHECK_TLS,
                "pass",
                format!(
                    "TLS handshake with {} verified (HTTP {} to GET /; nothing minted)",
                    client.host(),
                    status.as_u16()
                ),
            ),
            Err(e) => item(
                "deepvue-tls",
                CHECK_TLS,
                "fail",
                format!("{}: {e}", shown(&config.deepvue.base_url)),
            ),
        },
        Err(e) => item("deepvue-tls", CHECK_TLS, "fail", e.to_string()),
    }
}
