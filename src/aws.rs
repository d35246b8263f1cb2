//! Shared AWS SDK setup: one HTTPS client on the process's TLS stack (rustls + ring, OS roots
//! plus an optional extra CA), the standard credential chain, and the `[aws]` overrides.

use std::path::Path;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls;

use crate::config::AwsConfig;
use crate::error::ErrorKind;
use aws_sdk_secretsmanager::config::http::HttpResponse;

/// Load the SDK config: `[aws]` region / endpoint_url / profile over the standard chain
/// (environment, profile, web identity, ECS, IMDS; `AWS_ENDPOINT_URL` is honoured).
pub async fn sdk_config(cfg: &AwsConfig, extra_ca: Option<&Path>) -> Result<SdkConfig, String> {
    let mut trust = tls::TrustStore::default().with_native_roots(true);
    if let Some(ca) = extra_ca {
        let pem =
            std::fs::read(ca).map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?;
        trust = trust.with_pem_certificate(pem);
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| format!("AWS TLS setup: {e}"))?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(r) = &cfg.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &cfg.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    if let Some(p) = &cfg.profile {
        loader = loader.profile_name(p);
    }
    Ok(loader.load().await)
}

/// Lazily built AWS clients shared by every token of one config: a run that touches no AWS
/// backend never loads the credential chain.
pub struct AwsClients {
    cfg: AwsConfig,
    sm: tokio::sync::OnceCell<aws_sdk_secretsmanager::Client>,
}

impl AwsClients {
    /// Clients for this `[aws]` section.
    pub fn new(cfg: &AwsConfig) -> std::sync::Arc<Self> {
        std::sync::Arc::new(AwsClients {
            cfg: cfg.clone(),
            sm: tokio::sync::OnceCell::new(),
        })
    }

    /// Clients around an already built Secrets Manager client (tests, embedders).
    pub fn with_secrets_manager(
        cfg: &AwsConfig,
        client: aws_sdk_secretsmanager::Client,
    ) -> std::sync::Arc<Self> {
        std::sync::Arc::new(AwsClients {
            cfg: cfg.clone(),
            sm: tokio::sync::OnceCell::new_with(Some(client)),
        })
    }

    /// The Secrets Manager client, built on first use.
    pub async fn secrets_manager(&self) -> Result<&aws_sdk_secretsmanager::Client, String> {
        self.sm
            .get_or_try_init(|| async {
                let sdk = sdk_config(&self.cfg, self.cfg.ca_file.as_deref()).await?;
                Ok::<_, String>(aws_sdk_secretsmanager::Client::new(&sdk))
            })
            .await
    }
}

/// A Secrets Manager failure, sorted into our classes. `action` is the IAM action the call
/// needs (named when access is denied); `kms` says whether a KMS key may be involved.
pub fn classify_sm_error<E>(
    err: &aws_sdk_secretsmanager::error::SdkError<E, HttpResponse>,
    action: &str,
    kms: bool,
) -> (ErrorKind, String)
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_secretsmanager::error::SdkError;
    let context = aws_sdk_secretsmanager::error::DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("Unknown");
            let msg = e.message().unwrap_or("").to_string();
            let status = se.raw().status().as_u16();
            let kind = sm_code_kind(code, status);
            let text = match code {
                "AccessDeniedException" | "AccessDenied" => {
                    let kms_hint = if kms || msg.to_ascii_lowercase().contains("kms") {
                        if action == "PutSecretValue" || action == "CreateSecret" {
                            " and kms:GenerateDataKey + kms:Decrypt on the secret's KMS key"
                        } else {
                            " and kms:Decrypt on the secret's KMS key"
                        }
                    } else {
                        ""
                    };
                    format!(
                        "access denied ({msg}): the caller needs secretsmanager:{action}{kms_hint}"
                    )
                }
                "DecryptionFailure" => format!(
                    "cannot decrypt the secret ({msg}): the caller needs kms:Decrypt on its KMS key"
                ),
                "ResourceNotFoundException" => format!("not found ({msg})"),
                "ResourceExistsException" => format!("already exists ({msg})"),
                "ThrottlingException" | "LimitExceededException" => {
                    format!("{code}: {msg} (retry later)")
                }
                _ => format!("{action} failed: {code}: {msg} (HTTP {status})"),
            };
            (kind, text)
        }
        SdkError::TimeoutError(_) => (
            ErrorKind::Transient,
            format!("{action} timed out: {context}"),
        ),
        SdkError::DispatchFailure(d) => {
            // Identity and endpoint are resolved just before sending: their failures arrive
            // here too, and are configuration, not the network.
            if let Some(why) = setup_failure(err) {
                return (ErrorKind::Config, format!("{action}: {why}"));
            }
            // A certificate problem does not heal by retrying.
            let tls = crate::tls::tls_failure(err);
            match tls {
                Some(why) => (
                    ErrorKind::Permanent,
                    format!("{action}: TLS verification failed: {why}"),
                ),
                None if d.is_user() => (ErrorKind::Config, format!("{action}: {context}")),
                None => (
                    ErrorKind::Transient,
                    format!("{action}: cannot reach Secrets Manager: {context}"),
                ),
            }
        }
        SdkError::ConstructionFailure(_) => (
            ErrorKind::Config,
            format!(
                "{action}: cannot build the request ({context}); is a region set ([aws] region or \
                 AWS_REGION)?"
            ),
        ),
        _ => (ErrorKind::Transient, format!("{action}: {context}")),
    }
}

/// Missing/invalid AWS credentials or an unresolvable endpoint (no region), found in an
/// error's source chain.
fn setup_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use aws_credential_types::provider::error::CredentialsError;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return match c {
                CredentialsError::CredentialsNotLoaded(_) => Some(
                    "no AWS credentials found (environment, profile, web identity, ECS or \
                     instance role)"
                        .into(),
                ),
                CredentialsError::InvalidConfiguration(_) => Some(format!(
                    "AWS credential configuration is invalid: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(c)
                )),
                _ => None,
            };
        }
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("endpoint") && text.contains("region") {
            return Some(format!(
                "cannot resolve the Secrets Manager endpoint ({e}); set [aws] region or AWS_REGION"
            ));
        }
        cur = e.source();
    }
    None
}

/// The class of a Secrets Manager error code.
pub fn sm_code_kind(code: &str, status: u16) -> ErrorKind {
    match code {
        "ResourceExistsException" => ErrorKind::Conflict,
        "ResourceNotFoundException" => ErrorKind::Config,
        "ThrottlingException"
        | "LimitExceededException"
        | "InternalServiceError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorKind::Transient,
        _ if status >= 500 || status == 429 => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

/// The error code of a service error, if the call got that far.
pub fn sm_code<E, R>(err: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> Option<&str>
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata,
{
    match err {
        aws_sdk_secretsmanager::error::SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

/// A secret's name, from a name or an ARN (`…:secret:NAME-AbCdEf`).
pub fn secret_name(id: &str) -> &str {
    match id.split_once(":secret:") {
        Some((prefix, name)) if prefix.starts_with("arn:") => {
            let bytes = name.as_bytes();
            let n = bytes.len();
            if n > 7 && bytes[n - 7] == b'-' && bytes[n - 6..].iter().all(u8::is_ascii_alphanumeric)
            {
                &name[..n - 7]
            } else {
                name
            }
        }
        _ => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::error::{ErrorMetadata, SdkError};
    use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError;

    fn service_error(
        code: &str,
        message: &str,
        status: u16,
    ) -> SdkError<PutSecretValueError, HttpResponse> {
        let err = PutSecretValueError::generic(
            ErrorMetadata::builder().code(code).message(message).build(),
        );
        let status = aws_smithy_runtime_api::http::StatusCode::try_from(status)
            .unwrap_or_else(|e| panic!("{e}"));
        SdkError::service_error(
            err,
            HttpResponse::new(status, aws_smithy_types::body::SdkBody::empty()),
        )
    }

    #[test]
    fn service_errors_are_classified_and_name_the_iam_action() {
        let (kind, msg) = classify_sm_error(
            &service_error("AccessDeniedException", "User is not authorized", 400),
            "PutSecretValue",
            false,
        );
        assert_eq!(kind, ErrorKind::Permanent);
        assert!(msg.contains("secretsmanager:PutSecretValue"), "{msg}");
        assert!(!msg.contains("kms"), "{msg}");
        let (_, msg) = classify_sm_error(
            &service_error("AccessDeniedException", "Access to KMS is not allowed", 400),
            "PutSecretValue",
            false,
        );
        assert!(
            msg.contains("kms:GenerateDataKey") && msg.contains("kms:Decrypt"),
            "{msg}"
        );
        let (_, msg) = classify_sm_error(
            &service_error("AccessDeniedException", "denied", 400),
            "GetSecretValue",
            true,
        );
        assert!(
            msg.contains("kms:Decrypt") && !msg.contains("GenerateDataKey"),
            "{msg}"
        );
        let (kind, msg) = classify_sm_error(
            &service_error("DecryptionFailure", "cannot decrypt", 400),
            "GetSecretValue",
            false,
        );
        assert_eq!(kind, ErrorKind::Permanent);
        assert!(msg.contains("kms:Decrypt"), "{msg}");
        for (code, status, want) in [
            ("ThrottlingException", 400, ErrorKind::Transient),
            ("LimitExceededException", 400, ErrorKind::Transient),
            ("InternalServiceError", 500, ErrorKind::Transient),
            ("SomethingNew", 503, ErrorKind::Transient),
            ("ResourceNotFoundException", 400, ErrorKind::Config),
            ("ResourceExistsException", 400, ErrorKind::Conflict),
            ("InvalidRequestException", 400, ErrorKind::Permanent),
        ] {
            let (kind, _) =
                classify_sm_error(&service_error(code, "m", status), "PutSecretValue", false);
            assert_eq!(kind, want, "{code}");
        }
    }
}
