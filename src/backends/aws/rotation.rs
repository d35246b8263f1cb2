//! The Secrets Manager calls of native rotation (the Lambda mode sequences them): the
//! preamble's view of the secret, the AWSPENDING value, putting it, promoting it, releasing it.
//! They live here, beside the store's own calls, so no Secrets Manager call is written twice.

use std::collections::HashMap;

use aws_sdk_secretsmanager::error::SdkError;
use secrecy::ExposeSecret;

use super::errors::sm_code;
use super::store::{AwsStore, CURRENT};
use crate::core::document::{DocumentError, TokenDocument};
use crate::core::error::ErrorKind;
use crate::core::store::StoreError;

/// The staging label of a version being rotated in.
pub const PENDING: &str = "AWSPENDING";

/// What the rotation preamble needs to know about the secret.
#[derive(Clone, Debug)]
pub struct RotationState {
    /// `RotationEnabled`.
    pub enabled: bool,
    /// `VersionIdsToStages`.
    pub stages: HashMap<String, Vec<String>>,
}

impl RotationState {
    /// The labels on a version, if it is a version of this secret.
    pub fn labels(&self, version: &str) -> Option<&[String]> {
        self.stages.get(version).map(Vec::as_slice)
    }

    /// The version carrying AWSCURRENT.
    pub fn current(&self) -> Option<&str> {
        self.stages
            .iter()
            .find(|(_, v)| v.iter().any(|x| x == CURRENT))
            .map(|(k, _)| k.as_str())
    }
}

/// How a `put_pending` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingWrite {
    /// Our value is AWSPENDING.
    Written,
    /// A concurrent invocation for the same version wrote first; its value stands.
    Concurrent,
}

impl AwsStore {
    /// `DescribeSecret` for the preamble.
    pub async fn rotation_state(&self) -> Result<RotationState, StoreError> {
        let d = self
            .describe()
            .await?
            .ok_or_else(|| self.err(ErrorKind::Config, "the secret does not exist".into()))?;
        Ok(RotationState {
            enabled: d.rotation_enabled() == Some(true),
            stages: d.version_ids_to_stages().cloned().unwrap_or_default(),
        })
    }

    /// The AWSPENDING value of `version`: `None` when it has none yet.
    pub async fn pending(
        &self,
        version: &str,
    ) -> Result<Option<Result<TokenDocument, DocumentError>>, StoreError> {
        let client = self.client().await?;
        match client
            .get_secret_value()
            .secret_id(self.secret())
            .version_id(version)
            .version_stage(PENDING)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Self::document(out.secret_string()))),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(self.sdk_err(&e, "GetSecretValue")),
        }
    }

    /// Put `doc` as `version` with only the AWSPENDING label (AWSCURRENT stays where it is).
    pub async fn put_pending(
        &self,
        version: &str,
        doc: &TokenDocument,
        rotation_token: Option<&str>,
    ) -> Result<PendingWrite, StoreError> {
        let client = self.client().await?;
        let json = doc.to_json();
        let req = client
            .put_secret_value()
            .secret_id(self.secret())
            .client_request_token(version)
            .secret_string(json.expose_secret())
            .version_stages(PENDING)
            .set_rotation_token(rotation_token.map(str::to_string));
        match req.send().await {
            Ok(_) => Ok(PendingWrite::Written),
            Err(SdkError::ServiceError(se)) if se.err().is_resource_exists_exception() => {
                Ok(PendingWrite::Concurrent)
            }
            Err(e) => Err(self.sdk_err(&e, "PutSecretValue")),
        }
    }

    /// Move AWSCURRENT to `version` (AWSPREVIOUS follows by itself). A moved AWSCURRENT since
    /// `current` was read is a race: transient.
    pub async fn promote(&self, version: &str, current: Option<&str>) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .update_secret_version_stage()
            .secret_id(self.secret())
            .version_stage(CURRENT)
            .move_to_version_id(version)
            .set_remove_from_version_id(current.map(str::to_string))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let mut err = self.sdk_err(&e, "UpdateSecretVersionStage");
                if sm_code(&e) == Some("InvalidParameterException") {
                    err.kind = ErrorKind::Transient;
                }
                err
            })
    }

    /// Take AWSPENDING off `version`.
    pub async fn release_pending(&self, version: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .update_secret_version_stage()
            .secret_id(self.secret())
            .version_stage(PENDING)
            .remove_from_version_id(version)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.sdk_err(&e, "UpdateSecretVersionStage"))
    }
}
