//! The `aws` backend: AWS Secrets Manager credentials and token store, the native rotation
//! operations the Lambda mode drives, and the SNS alert sink — all on one shared SDK config.

mod credentials;
mod errors;
mod http;
mod rotation;
mod sdk;
pub mod sns;
mod state_tags;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

pub use credentials::AwsCredentials;
pub use errors::{classify_sm_error, sm_code, sm_code_kind};
pub use rotation::{PENDING, PendingWrite, RotationState};
pub use sdk::{AwsClients, sdk_config};
pub use state_tags::STATE_TAG_PREFIX;
pub use store::{AwsStore, MARKER};
/// The staging label of the current version.
pub const CURRENT: &str = store::CURRENT;

use super::{Backend, BuildContext, CredentialsEntry, SectionEntry, StoreEntry};
use crate::core::credentials::{CredentialKeys, CredentialSource};
use crate::core::parts::StoreParts;
use crate::support::net::is_loopback;
use crate::support::problem::Problem;
use crate::support::text::shown_url;

/// The `aws` backend: Secrets Manager credentials and token store (with Secrets Manager's
/// native rotation protocol), on one SDK config per process.
pub struct Aws;

impl Backend for Aws {
    type Section = AwsSection;
    type Clients = AwsClients;
    type Credentials = AwsCredentialsConfig;
    type Store = AwsStoreConfig;

    fn clients(section: &AwsSection) -> Arc<AwsClients> {
        AwsClients::new(section)
    }
}

/// `[aws]`: settings for every AWS client (Secrets Manager, SNS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// Region (else the standard chain: AWS_REGION, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override (else AWS_ENDPOINT_URL); plain http only for loopback emulators.
    pub endpoint_url: Option<String>,
    /// Named profile.
    pub profile: Option<String>,
    /// Extra trust anchor (PEM) for AWS endpoints, on top of the OS roots.
    pub ca_file: Option<PathBuf>,
}

impl SectionEntry for AwsSection {
    fn endpoint_note(&self) -> Option<String> {
        self.endpoint_url.as_ref().map(|e| {
            format!(
                "aws {}{}",
                shown_url(e),
                if e.starts_with("http://") {
                    " (loopback emulator)"
                } else {
                    ""
                }
            )
        })
    }

    fn validate(&self) -> Result<(), Problem> {
        if let Some(ca) = &self.ca_file
            && !ca.is_file()
        {
            return Err(Problem::invalid(format!(
                "aws.ca_file `{}` does not exist or is not a file",
                ca.display()
            )));
        }
        if let Some(e) = &self.endpoint_url {
            // No user info, query or fragment: the SDK would print them in its errors and logs.
            let url = crate::support::url::plain_endpoint("aws.endpoint_url", e)?;
            if url.scheme() != "https" && !is_loopback(&url) {
                return Err(Problem::insecure(format!(
                    "aws.endpoint_url must use https:// (plain http only for a loopback \
                     emulator; got `{}`)",
                    shown_url(e)
                )));
            }
        }
        Ok(())
    }
}

/// `credentials = { backend = "aws", secret_id, version_stage?, client_id_key?,
/// client_secret_key? }`: a secret whose SecretString is JSON with the two fields.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsCredentialsConfig {
    /// Secret name or ARN.
    pub secret_id: String,
    /// Staging label to read (default AWSCURRENT).
    pub version_stage: Option<String>,
    /// JSON key of the client id (default `client_id`).
    pub client_id_key: Option<String>,
    /// JSON key of the client secret (default `client_secret`).
    pub client_secret_key: Option<String>,
}

impl CredentialsEntry for AwsCredentialsConfig {
    fn validate(&self, at: &str) -> Result<(), Problem> {
        check_secret_id(at, &self.secret_id)?;
        Problem::no_blank(
            at,
            &[
                ("version_stage", self.version_stage.as_deref()),
                ("client_id_key", self.client_id_key.as_deref()),
                ("client_secret_key", self.client_secret_key.as_deref()),
            ],
        )
    }

    /// The name, compared with each store's loose identity (its name).
    fn identity(&self) -> Option<String> {
        Some(secret_name(&self.secret_id).to_string())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn CredentialSource> {
        Box::new(AwsCredentials::new(
            ctx.clients.aws.clone(),
            self.secret_id.clone(),
            self.version_stage.clone(),
            CredentialKeys::named(
                self.client_id_key.as_deref(),
                self.client_secret_key.as_deref(),
            ),
        ))
    }
}

/// `store = { backend = "aws", secret_id, create_if_missing?, kms_key_id?, tags? }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsStoreConfig {
    /// Secret name or ARN.
    pub secret_id: String,
    /// Create the secret on the first write when it does not exist (default false: a missing
    /// secret is a config error).
    #[serde(default)]
    pub create_if_missing: bool,
    /// KMS key for a secret this tool creates (default: the AWS-managed key).
    pub kms_key_id: Option<String>,
    /// Tags for a secret this tool creates.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl StoreEntry for AwsStoreConfig {
    fn validate(&self, at: &str) -> Result<(), Problem> {
        check_secret_id(at, &self.secret_id)?;
        if !self.create_if_missing && (self.kms_key_id.is_some() || !self.tags.is_empty()) {
            return Err(Problem::invalid(format!(
                "{at}: kms_key_id and tags apply only to a secret this tool creates; set \
                 create_if_missing = true or set them where the secret is provisioned"
            )));
        }
        if self
            .kms_key_id
            .as_deref()
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err(Problem::invalid(format!("{at}.kms_key_id is empty")));
        }
        for (k, v) in &self.tags {
            if k.is_empty() || k.len() > 128 || v.len() > 256 {
                return Err(Problem::invalid(format!(
                    "{at}.tags: key `{k}` must be 1-128 characters and its value at most 256"
                )));
            }
            if k.starts_with("aws:") || k.starts_with(STATE_TAG_PREFIX) {
                return Err(Problem::invalid(format!(
                    "{at}.tags: the prefix of `{k}` is reserved"
                )));
            }
        }
        Ok(())
    }

    /// The secret's name, prefixed with its ARN's region when it has one: the same name in
    /// two regions is two stores (a fan-out across regions). A plain name, whose region is known
    /// only at run time, collides with any store of that name ([`StoreEntry::loose_identity`]).
    fn identity(&self) -> String {
        region_qualified(&self.secret_id)
    }

    /// The name: a plain name may be in any region.
    fn loose_identity(&self) -> String {
        secret_name(&self.secret_id).to_string()
    }

    /// Versions and run state (tags) in the secret, and Secrets Manager's native rotation
    /// protocol; no lease (the derived ClientRequestToken makes racing writers converge).
    fn build(&self, ctx: &BuildContext<'_>) -> StoreParts {
        let store = Arc::new(AwsStore::new(ctx.clients.aws.clone(), self));
        StoreParts::of(store.clone()).with_native(store)
    }
}

/// Whether a secret id (name or ARN, e.g. from a rotation event) names `configured`.
pub(crate) fn same_secret(configured: &str, id: &str) -> bool {
    configured == id || secret_name(configured) == secret_name(id)
}

/// A Secrets Manager secret id: a name or an ARN, 1-2048 characters.
fn check_secret_id(at: &str, id: &str) -> Result<(), Problem> {
    if id.trim().is_empty() {
        return Err(Problem::invalid(format!("{at}.secret_id is empty")));
    }
    if id.len() > 2048 || id.trim() != id {
        return Err(Problem::invalid(format!(
            "{at}.secret_id `{id}` is not a secret name or ARN (at most 2048 characters, no \
             surrounding spaces)"
        )));
    }
    if id.starts_with("arn:") && id.split(':').count() < 7 {
        return Err(Problem::invalid(format!(
            "{at}.secret_id `{id}` looks like an ARN but is not one \
             (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
        )));
    }
    Ok(())
}

/// `REGION/NAME` for an ARN, `NAME` for a plain name.
fn region_qualified(id: &str) -> String {
    match arn_region(id) {
        Some(r) => format!("{r}/{}", secret_name(id)),
        None => secret_name(id).to_string(),
    }
}

/// The region of a secret named by its ARN (`arn:PARTITION:secretsmanager:REGION:…`); `None`
/// for a plain name (the configured region's).
pub fn arn_region(id: &str) -> Option<&str> {
    if !id.starts_with("arn:") {
        return None;
    }
    id.split(':').nth(3).filter(|r| !r.is_empty())
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

    #[test]
    fn arn_regions_route_and_qualify_identities() {
        let east = "arn:aws:secretsmanager:us-east-1:123456789012:secret:deepvue/prod/token-AbC123";
        let west = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:deepvue/prod/token-XyZ789";
        assert_eq!(arn_region(east), Some("us-east-1"));
        assert_eq!(arn_region("deepvue/prod/token"), None);
        assert_eq!(arn_region("arn:aws:secretsmanager::1:secret:x"), None);
        assert_eq!(region_qualified(east), "us-east-1/deepvue/prod/token");
        assert_ne!(
            region_qualified(east),
            region_qualified(west),
            "two regions, two stores"
        );
        assert_eq!(region_qualified("deepvue/prod/token"), "deepvue/prod/token");
    }

    #[test]
    fn secret_names_from_arns() {
        assert_eq!(
            secret_name(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:deepvue/token-AbC123"
            ),
            "deepvue/token"
        );
        assert_eq!(secret_name("deepvue/token"), "deepvue/token");
        assert_eq!(
            secret_name("arn:aws:secretsmanager:us-east-1:1:secret:x"),
            "x"
        );
    }
}
