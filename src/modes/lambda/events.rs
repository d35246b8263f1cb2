//! Events: a Secrets Manager rotation step, or anything else (a scheduled pass).

use serde_json::Value;

use super::Failure;
use crate::core::error::ErrorKind;
use crate::core::trigger::{RotationStep, StepKind as Step};

/// A Secrets Manager rotation event: one step of the native rotation protocol.
pub type RotationEvent = RotationStep;

fn field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| v.get(n).and_then(Value::as_str))
}

/// `None` when the event is not a rotation (it has no `Step` and `ClientRequestToken`).
pub fn parse(v: &Value) -> Option<Result<RotationEvent, Failure>> {
    {
        v.get("Step").or_else(|| v.get("step"))?;
        // From here on it claims to be a rotation: malformed is an error, never a scheduled
        // pass by accident.
        let Some(step) = field(v, &["Step", "step"]) else {
            return Some(Err(Failure::new(
                ErrorKind::Config,
                "rotation event whose Step is not a string",
            )));
        };
        let Some(token) = field(v, &["ClientRequestToken", "client_request_token"]) else {
            return Some(Err(Failure::new(
                ErrorKind::Config,
                "rotation event without a string ClientRequestToken",
            )));
        };
        let step = match step {
            "createSecret" | "create_secret" => Step::Create,
            "setSecret" | "set_secret" => Step::Set,
            "testSecret" | "test_secret" => Step::Test,
            "finishSecret" | "finish_secret" => Step::Finish,
            other => {
                return Some(Err(Failure::new(
                    ErrorKind::Config,
                    format!("unknown rotation step `{other}`"),
                )));
            }
        };
        let Some(secret_id) = field(v, &["SecretId", "secret_id"]) else {
            return Some(Err(Failure::new(
                ErrorKind::Config,
                "rotation event without SecretId",
            )));
        };
        Some(Ok(RotationStep {
            step,
            secret_id: secret_id.to_string(),
            version: token.to_string(),
            rotation_token: field(v, &["RotationToken", "rotation_token"]).map(str::to_string),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_dispatch() {
        let sched = json!({"version":"0","detail-type":"Scheduled Event","source":"aws.scheduler","detail":"{}"});
        assert!(parse(&sched).is_none());
        let rot = json!({"Step":"createSecret","SecretId":"arn:aws:secretsmanager:us-east-1:1:secret:app/tok-AbC123","ClientRequestToken":"t"});
        assert!(matches!(
            parse(&rot),
            Some(Ok(RotationStep {
                step: Step::Create,
                ..
            }))
        ));
        let snake = json!({"step":"finish_secret","secret_id":"x","client_request_token":"t"});
        assert!(matches!(
            parse(&snake),
            Some(Ok(RotationStep {
                step: Step::Finish,
                ..
            }))
        ));
        let bad = json!({"Step":"dance","SecretId":"x","ClientRequestToken":"t"});
        assert!(matches!(parse(&bad), Some(Err(_))));
        let no_token = json!({"Step":"createSecret","SecretId":"x","ClientRequestToken":5});
        assert!(matches!(parse(&no_token), Some(Err(_))));
    }
}
