//! Secret Manager errors, sorted once into our classes, with messages that name the IAM
//! permission a denied call needs.

use google_cloud_gax::error::Error;
use google_cloud_gax::error::rpc::Code;

use crate::core::error::ErrorKind;
use crate::support::text::truncate;

/// The gRPC code of an error, looking through an "exhausted" wrapper.
pub fn code(e: &Error) -> Option<Code> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(g) = x.downcast_ref::<Error>()
            && let Some(s) = g.status()
        {
            return Some(s.code);
        }
        cur = x.source();
    }
    None
}

fn service_message(e: &Error) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(g) = x.downcast_ref::<Error>()
            && let Some(s) = g.status()
        {
            return truncate(&s.message, 300);
        }
        cur = x.source();
    }
    String::new()
}

/// A failed call, sorted into our classes. `action` is the RPC (`AddSecretVersion`),
/// `permission` the IAM permission it needs (named when access is denied).
pub fn classify(e: &Error, action: &str, permission: &str) -> (ErrorKind, String) {
    if let Some(c) = code(e) {
        let msg = service_message(e);
        return match c {
            Code::NotFound => (ErrorKind::Config, format!("{action}: not found ({msg})")),
            Code::PermissionDenied => (
                ErrorKind::Permanent,
                format!(
                    "{action}: permission denied ({msg}): the caller needs {permission} on the \
                     secret"
                ),
            ),
            Code::Unauthenticated => (
                ErrorKind::Config,
                format!(
                    "{action}: not authenticated ({msg}): check the Application Default \
                     Credentials"
                ),
            ),
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Internal
            | Code::Aborted
            | Code::Cancelled
            | Code::Unknown => (
                ErrorKind::Transient,
                format!("{action}: {c:?} ({msg}); retry later"),
            ),
            Code::InvalidArgument | Code::OutOfRange => (
                ErrorKind::Permanent,
                format!("{action}: invalid argument ({msg})"),
            ),
            other => (ErrorKind::Permanent, format!("{action}: {other:?} ({msg})")),
        };
    }
    if e.is_authentication() {
        let transient = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<google_cloud_gax::error::CredentialsError>())
            .is_some_and(|c| c.is_transient());
        let text = format!(
            "{action}: cannot get Google credentials ({e}); set GOOGLE_APPLICATION_CREDENTIALS, \
             run `gcloud auth application-default login`, or run on GCP with a service account"
        );
        return (
            if transient {
                ErrorKind::Transient
            } else {
                ErrorKind::Config
            },
            text,
        );
    }
    if let Some(why) = crate::support::tls::tls_failure(e) {
        return (
            ErrorKind::Permanent,
            format!(
                "{action}: TLS verification failed: {why} (the Secret Manager client trusts the \
                 OS store or SSL_CERT_FILE)"
            ),
        );
    }
    if e.is_binding() {
        return (
            ErrorKind::Config,
            format!("{action}: not a valid resource name ({e})"),
        );
    }
    if e.is_deserialization() {
        return (
            ErrorKind::Transient,
            format!("{action}: unexpected answer ({e})"),
        );
    }
    if let Some(status) = e.http_status_code() {
        let kind = if status == 429 || status >= 500 {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        };
        return (kind, format!("{action}: HTTP {status}"));
    }
    (
        ErrorKind::Transient,
        format!("{action}: cannot reach Secret Manager ({e})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_gax::error::rpc::Status;

    fn err(c: Code) -> Error {
        Error::service(Status::default().set_code(c).set_message("m"))
    }

    #[test]
    fn classes() {
        let k = |c| classify(&err(c), "AddSecretVersion", "secretmanager.versions.add");
        assert_eq!(k(Code::NotFound).0, ErrorKind::Config);
        let (kind, msg) = k(Code::PermissionDenied);
        assert_eq!(kind, ErrorKind::Permanent);
        assert!(msg.contains("secretmanager.versions.add"), "{msg}");
        for c in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Internal,
        ] {
            assert_eq!(k(c).0, ErrorKind::Transient, "{c:?}");
        }
        assert_eq!(k(Code::FailedPrecondition).0, ErrorKind::Permanent);
        let wrapped = Error::exhausted(err(Code::Unavailable));
        assert_eq!(code(&wrapped), Some(Code::Unavailable));
    }
}
