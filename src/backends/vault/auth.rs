//! How a Vault token is obtained: a static token (by reference, `$VAULT_TOKEN` or
//! `~/.vault-token`), or a login with AppRole, Kubernetes or JWT. Secret material (the token,
//! the secret_id, the JWT) is read when it is needed, goes into zeroising buffers and
//! `SecretString`s, and is never logged or put into a message.

use std::path::{Path, PathBuf};

use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::errors::VaultError;
use super::{AuthValue, VaultAuth};
use crate::core::error::ErrorKind;
use crate::support::secret_ref::{SecretRef, read_secret_file, read_token_file};

/// The service-account token the kubelet mounts into every pod (the Kubernetes method's
/// default `jwt`).
pub const DEFAULT_K8S_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The static token's environment default.
pub(super) const ENV_TOKEN: &str = "VAULT_TOKEN";

/// The configured auth method, resolved into what a login needs.
#[derive(Clone, Debug)]
pub(super) enum Method {
    /// A static token; `None` means `$VAULT_TOKEN`, else `~/.vault-token`.
    Token(Option<AuthValue>),
    /// A login at `auth/MOUNT/login`.
    Login {
        /// `approle`, `kubernetes` or `jwt`.
        method: &'static str,
        /// The auth mount.
        mount: String,
        /// What the login body carries.
        body: LoginBody,
    },
}

#[derive(Clone, Debug)]
pub(super) enum LoginBody {
    AppRole {
        role_id: AuthValue,
        secret_id: AuthValue,
    },
    /// `{role, jwt}` (Kubernetes and JWT); a JWT file may be a kubelet-mounted token
    /// (root-owned, readable by others).
    RoleJwt { role: String, jwt: AuthValue },
}

impl Method {
    pub(super) fn new(auth: &VaultAuth) -> Self {
        let mount = auth.login_mount().unwrap_or_default().to_string();
        match auth {
            VaultAuth::Token(t) => Method::Token(t.token.clone()),
            VaultAuth::Approle(a) => Method::Login {
                method: "approle",
                mount,
                body: LoginBody::AppRole {
                    role_id: a.role_id.clone(),
                    secret_id: a.secret_id.clone(),
                },
            },
            VaultAuth::Kubernetes(k) => Method::Login {
                method: "kubernetes",
                mount,
                body: LoginBody::RoleJwt {
                    role: k.role.clone(),
                    jwt: k.jwt.clone().unwrap_or_else(|| {
                        AuthValue::Ref(SecretRef {
                            env: None,
                            file: Some(PathBuf::from(DEFAULT_K8S_TOKEN)),
                            credential: None,
                        })
                    }),
                },
            },
            VaultAuth::Jwt(j) => Method::Login {
                method: "jwt",
                mount,
                body: LoginBody::RoleJwt {
                    role: j.role.clone(),
                    jwt: j.jwt.clone(),
                },
            },
        }
    }

    /// Whether a fresh token can be had by logging in again.
    pub(super) fn can_login(&self) -> bool {
        matches!(self, Method::Login { .. })
    }

    /// `auth/MOUNT/login`, for a login method.
    pub(super) fn login_path(&self) -> Option<String> {
        match self {
            Method::Token(_) => None,
            Method::Login { mount, .. } => Some(format!("auth/{mount}/login")),
        }
    }

    /// The method's name.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Method::Token(_) => "token",
            Method::Login { method, .. } => method,
        }
    }

    /// The static token, read now.
    pub(super) fn static_token(&self) -> Result<SecretString, VaultError> {
        let Method::Token(value) = self else {
            return Err(config_error("not the token method".into()));
        };
        if let Some(v) = value {
            return resolve(v, "vault.auth.token", false);
        }
        match std::env::var(ENV_TOKEN) {
            Ok(t) if !t.trim().is_empty() => return Ok(SecretString::from(t)),
            Ok(_) => return Err(config_error(format!("{ENV_TOKEN} is set but empty"))),
            Err(_) => {}
        }
        let Some(home) = std::env::var_os("HOME") else {
            return Err(no_token());
        };
        let file = Path::new(&home).join(".vault-token");
        match read_secret_file(&file) {
            Ok(bytes) => text(&bytes, &file.display().to_string()),
            Err(crate::support::secret_ref::SecretError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(no_token())
            }
            Err(e) => Err(config_error(format!("Vault token file: {e}"))),
        }
    }

    /// The login body (JSON, zeroised on drop), with its secrets read now.
    pub(super) fn login_body(&self) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        #[derive(Serialize)]
        struct AppRole<'a> {
            role_id: &'a str,
            secret_id: &'a str,
        }
        #[derive(Serialize)]
        struct RoleJwt<'a> {
            role: &'a str,
            jwt: &'a str,
        }
        let Method::Login { body, .. } = self else {
            return Err(config_error("the token method has no login".into()));
        };
        let mut out = Zeroizing::new(Vec::new());
        let written = match body {
            LoginBody::AppRole { role_id, secret_id } => {
                let role_id = resolve(role_id, "vault.auth.role_id", false)?;
                let secret_id = resolve(secret_id, "vault.auth.secret_id", false)?;
                serde_json::to_writer(
                    &mut *out,
                    &AppRole {
                        role_id: role_id.expose_secret(),
                        secret_id: secret_id.expose_secret(),
                    },
                )
            }
            LoginBody::RoleJwt { role, jwt } => {
                let jwt = resolve(jwt, "vault.auth.jwt", true)?;
                serde_json::to_writer(
                    &mut *out,
                    &RoleJwt {
                        role,
                        jwt: jwt.expose_secret(),
                    },
                )
            }
        };
        written.map_err(|e| config_error(format!("cannot encode the login request: {e}")))?;
        Ok(out)
    }
}

/// What a login or renewal answered (`auth` of the response envelope).
#[derive(Deserialize)]
pub(super) struct AuthAnswer {
    pub client_token: SecretString,
    #[serde(default)]
    pub lease_duration: u64,
    #[serde(default)]
    pub renewable: bool,
}

/// The `auth` object of a login or renew-self answer.
pub(super) fn parse_auth(body: &[u8]) -> Option<AuthAnswer> {
    #[derive(Deserialize)]
    struct Envelope {
        auth: Option<AuthAnswer>,
    }
    serde_json::from_slice::<Envelope>(body).ok()?.auth
}

/// A value under `auth`, read now. `platform_token`: a file may be a kubelet-mounted token.
fn resolve(v: &AuthValue, at: &str, platform_token: bool) -> Result<SecretString, VaultError> {
    match v {
        AuthValue::Inline(s) => Ok(s.clone()),
        AuthValue::Ref(SecretRef {
            env: None,
            file: Some(path),
            credential: None,
        }) if platform_token => {
            let bytes = read_token_file(path).map_err(|e| config_error(format!("{at}: {e}")))?;
            text(&bytes, &path.display().to_string())
        }
        AuthValue::Ref(r) => r
            .resolve()
            .map_err(|e| config_error(format!("{at} ({}): {e}", r.describe()))),
    }
}

/// File bytes as one trimmed line of text.
fn text(bytes: &[u8], what: &str) -> Result<SecretString, VaultError> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| config_error(format!("{what} is not UTF-8 text")))?;
    let s = Zeroizing::new(s.trim().to_string());
    if s.is_empty() {
        return Err(config_error(format!("{what} is empty")));
    }
    Ok(SecretString::from(s.as_str()))
}

fn no_token() -> VaultError {
    config_error(format!(
        "no Vault token: set [vault] auth.token = {{ env = \"NAME\" }} or {{ file = \"/path\" }}, \
         set {ENV_TOKEN}, or log in with the Vault CLI (~/.vault-token); or use method = \
         \"approle\", \"kubernetes\" or \"jwt\""
    ))
}

fn config_error(message: String) -> VaultError {
    VaultError::new(ErrorKind::Config, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_bodies_carry_the_secrets_and_debug_does_not() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("sid");
        std::fs::write(&file, "SENTINEL-sid\n").unwrap_or_else(|e| panic!("{e}"));
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(&file, perms).unwrap_or_else(|e| panic!("{e}"));
        let m = Method::Login {
            method: "approle",
            mount: "approle".into(),
            body: LoginBody::AppRole {
                role_id: AuthValue::Inline("role-1".into()),
                secret_id: AuthValue::Ref(SecretRef {
                    env: None,
                    file: Some(file),
                    credential: None,
                }),
            },
        };
        let body = m.login_body().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::str::from_utf8(&body).unwrap_or_default(),
            r#"{"role_id":"role-1","secret_id":"SENTINEL-sid"}"#
        );
        assert!(!format!("{m:?}").contains("SENTINEL"));
        assert!(!format!("{m:?}").contains("role-1"));
        assert_eq!(m.login_path().as_deref(), Some("auth/approle/login"));
    }
}
