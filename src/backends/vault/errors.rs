//! Vault answers and transport failures, sorted once into our classes, with messages that name
//! the Vault address, the API path and the policy capability a denied call needs. Vault's own
//! error strings (`{"errors":[…]}`) carry no secret values; they are truncated, never echoed
//! with a request body.

use crate::core::error::ErrorKind;
use crate::support::http::error_chain;
use crate::support::text::truncate;

/// A Vault call failed. The message names the address or path, never a value.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct VaultError {
    /// Its class.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
    /// The underlying failure, when there is one.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl VaultError {
    /// An error without an underlying cause.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        VaultError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(super) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// What a call was doing, for the capability a denial names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// `GET mount/data/path`.
    ReadData,
    /// `POST mount/data/path`; `create` when the path holds nothing yet.
    WriteData { create: bool },
    /// `GET mount/metadata/path`.
    ReadMetadata,
    /// `POST mount/metadata/path`; `create` when the path has no metadata yet.
    WriteMetadata { create: bool },
    /// `POST auth/MOUNT/login`.
    Login,
    /// `POST auth/token/renew-self`.
    RenewSelf,
    /// `GET auth/token/lookup-self`.
    LookupSelf,
    /// `POST sys/capabilities-self`.
    Capabilities,
}

impl Op {
    /// The policy capability this call needs on its path.
    pub(super) fn capability(self) -> &'static str {
        match self {
            Op::ReadData | Op::ReadMetadata | Op::LookupSelf => "read",
            Op::WriteData { create: true } | Op::WriteMetadata { create: true } => "create",
            Op::WriteData { create: false }
            | Op::WriteMetadata { create: false }
            | Op::Login
            | Op::RenewSelf
            | Op::Capabilities => "update",
        }
    }
}

/// Whether Vault's error list says "check-and-set did not match" (data or metadata CAS).
pub(super) fn is_cas_mismatch(errors: &[String]) -> bool {
    errors.iter().any(|e| {
        let e = e.to_ascii_lowercase();
        e.contains("check-and-set parameter did not match")
            || e.contains("check-and-set parameter does not match")
    })
}

/// Whether a 403 is the bare `permission denied` Vault gives for an invalid or expired token
/// (an ACL denial is a multierror, `1 error occurred: * permission denied`).
pub(super) fn is_token_refused(status: u16, errors: &[String]) -> bool {
    status == 403 && errors.len() == 1 && errors[0].trim() == "permission denied"
}

/// Vault's error strings, joined and shortened, multierror noise removed.
pub(super) fn detail(errors: &[String]) -> String {
    let joined = errors
        .iter()
        .map(|e| {
            e.replace("1 error occurred:", "")
                .replace("\n\t* ", " ")
                .replace(['\n', '\t'], " ")
                .trim()
                .to_string()
        })
        .filter(|e| !e.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    truncate(&joined, 300)
}

/// An HTTP answer that is not a success, as a classified error. `addr` is the shown Vault
/// address, `path` the API path (as written in policies, e.g. `secret/data/deepvue/token`).
pub(super) fn classify(
    addr: &str,
    op: Op,
    path: &str,
    status: u16,
    errors: &[String],
) -> VaultError {
    let msg = detail(errors);
    let lower = msg.to_ascii_lowercase();
    let (kind, text) = match status {
        503 if lower.contains("sealed") => (
            ErrorKind::Transient,
            format!("Vault at {addr} is sealed (HTTP 503); retry after it is unsealed"),
        ),
        429 => (
            ErrorKind::Transient,
            format!(
                "Vault at {addr} answered HTTP 429 on `{path}` (a standby node or a rate limit); \
                 retry later"
            ),
        ),
        300..=399 => (
            ErrorKind::Transient,
            format!(
                "Vault at {addr} answered a redirect (HTTP {status}) on `{path}`: a standby node \
                 without a reachable active node?"
            ),
        ),
        500 if op == Op::Login && lower.contains("could not load backend configuration") => (
            ErrorKind::Config,
            format!("the auth method at `{path}` is not configured in Vault ({msg})"),
        ),
        500..=599 => (
            ErrorKind::Transient,
            format!("Vault at {addr} answered HTTP {status} on `{path}`: {msg}"),
        ),
        403 if op == Op::Login => (
            ErrorKind::Permanent,
            format!("Vault refused the login at `{path}` (HTTP 403): {msg}"),
        ),
        400 if op == Op::Login => (
            ErrorKind::Permanent,
            format!("Vault refused the login at `{path}` (HTTP 400): {msg}"),
        ),
        403 if is_token_refused(status, errors) => (
            ErrorKind::Permanent,
            format!(
                "Vault refused the token on `{path}` (invalid or expired; HTTP 403 permission \
                 denied)"
            ),
        ),
        403 => (
            ErrorKind::Permanent,
            format!(
                "permission denied on `{path}`: the Vault policy needs the `{}` capability on \
                 `{path}`",
                op.capability()
            ),
        ),
        404 if lower.contains("namespace not found") => (
            ErrorKind::Config,
            format!("Vault at {addr}: the namespace does not exist ({msg})"),
        ),
        404 if lower.contains("no handler for route") => (
            ErrorKind::Config,
            format!(
                "Vault at {addr} has no secrets engine or auth method mounted for `{path}` \
                 (check the mount name)"
            ),
        ),
        404 => (
            ErrorKind::Config,
            format!("`{path}` does not exist in Vault"),
        ),
        400 if is_cas_mismatch(errors) => (
            ErrorKind::Conflict,
            format!("`{path}` changed since it was read (check-and-set mismatch); nothing written"),
        ),
        _ => (
            ErrorKind::Permanent,
            format!(
                "Vault answered HTTP {status} on `{path}`{}",
                if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {msg}")
                }
            ),
        ),
    };
    VaultError::new(kind, text)
}

/// A request that got no HTTP answer: TLS problems are permanent, everything else transient.
pub(super) fn transport(addr: &str, path: &str, err: reqwest::Error) -> VaultError {
    let err = err.without_url();
    if let Some(why) = crate::support::tls::tls_failure(&err) {
        return VaultError::new(
            ErrorKind::Permanent,
            format!(
                "TLS verification of Vault at {addr} failed: {why} (set [vault] ca_file or \
                 VAULT_CACERT to the CA that signed its certificate)"
            ),
        )
        .with_source(err);
    }
    let what = if err.is_timeout() {
        "timed out"
    } else {
        "cannot be reached"
    };
    VaultError::new(
        ErrorKind::Transient,
        format!(
            "Vault at {addr} {what} (`{path}`): {}",
            truncate(&error_chain(&err), 300)
        ),
    )
    .with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn answers_are_classified_once() {
        let a = "https://vault:8200";
        let p = "secret/data/deepvue/prod/token";
        let acl = errs(&["1 error occurred:\n\t* permission denied\n\n"]);
        let e = classify(a, Op::WriteData { create: false }, p, 403, &acl);
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert!(
            e.message.contains(p) && e.message.contains("`update` capability"),
            "{e}"
        );
        let e = classify(a, Op::WriteData { create: true }, p, 403, &acl);
        assert!(e.message.contains("`create`"), "{e}");
        let e = classify(a, Op::ReadData, p, 403, &errs(&["permission denied"]));
        assert!(e.message.contains("invalid or expired"), "{e}");
        for (status, body, kind) in [
            (503, "Vault is sealed", ErrorKind::Transient),
            (500, "internal error", ErrorKind::Transient),
            (429, "", ErrorKind::Transient),
            (307, "", ErrorKind::Transient),
            (
                400,
                "check-and-set parameter did not match the current version",
                ErrorKind::Conflict,
            ),
            (
                400,
                "metadata check-and-set parameter does not match the current version",
                ErrorKind::Conflict,
            ),
            (404, "", ErrorKind::Config),
            (
                404,
                "no handler for route \"nomount/data/x\". route entry not found.",
                ErrorKind::Config,
            ),
            (400, "something else", ErrorKind::Permanent),
        ] {
            let e = classify(a, Op::ReadData, p, status, &errs(&[body]));
            assert_eq!(e.kind, kind, "{status} {body}: {e}");
        }
        let e = classify(a, Op::ReadData, p, 503, &errs(&["Vault is sealed"]));
        assert!(e.message.contains("sealed") && e.message.contains(a), "{e}");
        let e = classify(
            a,
            Op::Login,
            "auth/approle/login",
            400,
            &errs(&["invalid role or secret ID"]),
        );
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert!(e.message.contains("invalid role or secret ID"), "{e}");
        let e = classify(
            a,
            Op::Login,
            "auth/kubernetes/login",
            500,
            &errs(&["could not load backend configuration"]),
        );
        assert_eq!(e.kind, ErrorKind::Config);
    }
}
