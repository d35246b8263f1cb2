//! Secrets Manager errors, sorted once into our classes, with messages that name the IAM
//! action a denied call needs.

use aws_sdk_secretsmanager::config::http::HttpResponse;

use crate::core::error::ErrorKind;

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
            // An answer the SDK could not parse (some proxies and emulators send an XML or
            // empty body) keeps its HTTP status: a bare 403 is still access denied.
            let denied = matches!(code, "AccessDeniedException" | "AccessDenied")
                || (status == 403 && e.code().is_none_or(|c| c == "Unknown"));
            let text = match code {
                _ if denied => {
                    let kms_hint = if kms || msg.to_ascii_lowercase().contains("kms") {
                        if action == "PutSecretValue" || action == "CreateSecret" {
                            " and kms:GenerateDataKey + kms:Decrypt on the secret's KMS key"
                        } else {
                            " and kms:Decrypt on the secret's KMS key"
                        }
                    } else {
                        ""
                    };
                    let why = if msg.is_empty() {
                        String::new()
                    } else {
                        format!(" ({msg})")
                    };
                    format!(
                        "access denied{why}: the caller needs secretsmanager:{action}{kms_hint}"
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
            let tls = crate::support::tls::tls_failure(err);
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
    fn a_bare_403_is_access_denied() {
        let err = PutSecretValueError::generic(ErrorMetadata::builder().build());
        let status = aws_smithy_runtime_api::http::StatusCode::try_from(403)
            .unwrap_or_else(|e| panic!("{e}"));
        let e = SdkError::service_error(
            err,
            HttpResponse::new(status, aws_smithy_types::body::SdkBody::empty()),
        );
        let (kind, msg) = classify_sm_error(&e, "PutSecretValue", false);
        assert_eq!(kind, ErrorKind::Permanent);
        assert!(
            msg.contains("the caller needs secretsmanager:PutSecretValue"),
            "{msg}"
        );
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
