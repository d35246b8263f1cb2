//! The backends, and **the one place that lists them**: the [`registry!`] line per backend at
//! the bottom of this file.
//!
//! A backend is one folder (`file/`, `aws/`, `vault/`, `gcp/`, `kubernetes/`) or file (`env.rs`) that owns
//! its config types and their validation, its long-lived clients, its credential source, its
//! store contracts (token versions, leases, run state, a native rotation protocol) and its
//! share of `check`. It says what it provides by implementing [`Backend`]; the registry line
//! expands into the `credentials = { backend = … }` and `store = { backend = … }` enums, the
//! backends' own top-level tables ([`Sections`]), the long-lived [`Clients`], the feature
//! gates and the dispatch from a config entry to the backend that builds it.
//!
//! **Dependency rule:** backends depend on `core` and `support` only — never on `engine`,
//! `config`, `modes` or on each other.

#[cfg(feature = "aws")]
pub mod aws;
pub mod env;
pub mod file;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
#[cfg(feature = "vault")]
pub mod vault;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use crate::core::credentials::CredentialSource;
use crate::core::parts::StoreParts;
use crate::support::problem::Problem;

/// What a backend provides. Implemented by one marker type per backend (`aws::Aws`).
pub trait Backend {
    /// Its `[name]` table ([`NoSection`] for none).
    type Section: SectionEntry + Clone + Default + std::fmt::Debug + for<'de> Deserialize<'de>;
    /// Its long-lived clients, shared by every token of one config (`()` for none).
    type Clients: Send + Sync + 'static;
    /// Its `credentials = { backend = … }` entry.
    type Credentials: CredentialsEntry;
    /// Its `store = { backend = … }` entry ([`NoStore`] for none).
    type Store: StoreEntry;
    /// The clients for this section; nothing is built yet (a run that touches no token of
    /// this backend never loads its SDK credential chain).
    fn clients(section: &Self::Section) -> Arc<Self::Clients>;
    /// Keep the clients' own credentials fresh while a long-running process runs (Vault's
    /// token renewal); returns when there is nothing (more) to do.
    fn maintain(clients: &Arc<Self::Clients>) -> BoxFuture<'static, ()> {
        let _ = clients;
        Box::pin(async {})
    }
}

/// A backend's top-level table.
pub trait SectionEntry {
    /// Check it.
    fn validate(&self) -> Result<(), Problem> {
        Ok(())
    }
    /// A configured endpoint override, for `check`'s HTTPS item (e.g. `aws
    /// http://127.0.0.1:5000 (loopback emulator)`).
    fn endpoint_note(&self) -> Option<String> {
        None
    }
}

/// A `credentials = { backend = … }` entry.
pub trait CredentialsEntry {
    /// Check the entry at `at` (e.g. `tokens[0].credentials`).
    fn validate(&self, at: &str) -> Result<(), Problem>;
    /// The secret it reads, when that lives where a token store could be (to refuse a token
    /// whose store would overwrite its credentials).
    fn identity(&self) -> Option<String> {
        None
    }
    /// The credential source.
    fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn CredentialSource>;
}

/// A `store = { backend = … }` entry.
pub trait StoreEntry {
    /// Check the entry at `at` (e.g. `tokens[0].store`).
    fn validate(&self, at: &str) -> Result<(), Problem>;
    /// The store's identity: two entries with the same identity are one store, however they
    /// are spelled (`st` and `./st/`; an ARN with and without its suffix).
    fn identity(&self) -> String;
    /// The identity without what only run time knows (a plain AWS name's region, a
    /// Kubernetes entry's default namespace): two stores with the same loose identity may be
    /// one store unless both are fully qualified ([`StoreEntry::identity`] differs from it).
    /// The credentials secret is compared with it.
    fn loose_identity(&self) -> String {
        self.identity()
    }
    /// The store's contracts.
    fn build(&self, ctx: &BuildContext<'_>) -> StoreParts;
}

/// The section of a backend that has no top-level table: any `[name]` table is refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSection;

impl SectionEntry for NoSection {}

impl<'de> Deserialize<'de> for NoSection {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "this backend has no top-level table; its settings go in the token's entry",
        ))
    }
}

/// The store of a backend that keeps no tokens (`env`): an entry naming it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoStore {}

impl<'de> Deserialize<'de> for NoStore {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "this backend keeps no tokens: store tokens with the file, aws, vault, gcp or kubernetes backend",
        ))
    }
}

impl StoreEntry for NoStore {
    fn validate(&self, _: &str) -> Result<(), Problem> {
        match *self {}
    }
    fn identity(&self) -> String {
        match *self {}
    }
    fn build(&self, _: &BuildContext<'_>) -> StoreParts {
        match *self {}
    }
}

/// What building a store or credential source needs besides its own entry.
pub struct BuildContext<'a> {
    /// The shared clients.
    pub clients: &'a Clients,
    /// `[rotation] lock_timeout`: how long a store lock may be waited for.
    pub lock_timeout: Duration,
}

/// The registry: one line per backend (`name: Variant => path::Marker`, plus the Cargo
/// feature that provides it). It expands into every list and dispatch the rest of the program
/// uses.
macro_rules! registry {
    ($( $name:ident : $Variant:ident => $marker:ty $(, feature = $feature:literal)? ;)*) => {
        /// Where a token's client credentials come from: `credentials = { backend = "…", … }`.
        #[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
        #[serde(tag = "backend", rename_all = "snake_case")]
        pub enum CredentialsConfig {
            $(
                #[doc = concat!("The `", stringify!($name), "` backend.")]
                $(#[cfg(feature = $feature)])?
                $Variant(<$marker as Backend>::Credentials),
            )*
        }

        /// Where a token document is written: `store = { backend = "…", … }`.
        #[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
        #[serde(tag = "backend", rename_all = "snake_case")]
        pub enum StoreConfig {
            $(
                #[doc = concat!("The `", stringify!($name), "` backend.")]
                $(#[cfg(feature = $feature)])?
                $Variant(<$marker as Backend>::Store),
            )*
        }

        /// The backends' own top-level tables (`[aws]`, `[vault]`, `[gcp]`).
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Sections {
            $(
                #[doc = concat!("`[", stringify!($name), "]`.")]
                $(#[cfg(feature = $feature)])?
                #[serde(default)]
                pub $name: <$marker as Backend>::Section,
            )*
        }

        /// Long-lived clients shared by every token of one config, each built on first use.
        #[derive(Clone)]
        pub struct Clients {
            $(
                #[doc = concat!("The `", stringify!($name), "` backend's clients.")]
                $(#[cfg(feature = $feature)])?
                pub $name: Arc<<$marker as Backend>::Clients>,
            )*
        }

        /// Every backend's name, compiled in or not: the config loader hands these top-level
        /// tables to [`Sections`].
        pub const SECTION_NAMES: &[&str] = &[$(stringify!($name)),*];

        /// The Cargo feature that provides a backend (or its table) this binary was built
        /// without.
        pub fn missing_feature(name: &str) -> Option<&'static str> {
            $($(
                #[cfg(not(feature = $feature))]
                if name == stringify!($name) {
                    return Some($feature);
                }
            )?)*
            let _ = name;
            None
        }

        impl Sections {
            /// Check every section.
            pub fn validate(&self) -> Result<(), Problem> {
                $(
                    $(#[cfg(feature = $feature)])?
                    self.$name.validate()?;
                )*
                Ok(())
            }

            /// Configured endpoint overrides, for `check`'s HTTPS item; each was validated at
            /// load.
            pub fn endpoint_notes(&self) -> Vec<String> {
                let mut notes = Vec::new();
                $(
                    $(#[cfg(feature = $feature)])?
                    notes.extend(self.$name.endpoint_note());
                )*
                notes
            }
        }

        impl Clients {
            /// Clients for these sections (nothing is built yet).
            pub fn new(sections: &Sections) -> Self {
                Clients {
                    $(
                        $(#[cfg(feature = $feature)])?
                        $name: <$marker as Backend>::clients(&sections.$name),
                    )*
                }
            }

            /// Keep every backend's long-lived credentials fresh for as long as the process
            /// runs; never returns. Long-running modes run it beside their passes.
            // One push per compiled-in backend (a `cfg` per element): no `vec![]`.
            #[allow(clippy::vec_init_then_push)]
            pub async fn maintain(&self) {
                let mut upkeep: Vec<BoxFuture<'static, ()>> = Vec::new();
                $(
                    $(#[cfg(feature = $feature)])?
                    upkeep.push(<$marker as Backend>::maintain(&self.$name));
                )*
                futures::future::join_all(upkeep).await;
                std::future::pending::<()>().await
            }
        }

        impl CredentialsConfig {
            fn entry(&self) -> &dyn CredentialsEntry {
                match self {
                    $(
                        $(#[cfg(feature = $feature)])?
                        CredentialsConfig::$Variant(c) => c,
                    )*
                }
            }

            /// The backend's name.
            pub fn backend(&self) -> &'static str {
                match self {
                    $(
                        $(#[cfg(feature = $feature)])?
                        CredentialsConfig::$Variant(_) => stringify!($name),
                    )*
                }
            }
        }

        impl StoreConfig {
            fn entry(&self) -> &dyn StoreEntry {
                match self {
                    $(
                        $(#[cfg(feature = $feature)])?
                        StoreConfig::$Variant(c) => c,
                    )*
                }
            }

            /// The backend's name.
            pub fn backend(&self) -> &'static str {
                match self {
                    $(
                        $(#[cfg(feature = $feature)])?
                        StoreConfig::$Variant(_) => stringify!($name),
                    )*
                }
            }
        }
    };
}

impl CredentialsConfig {
    /// Check the entry at `at` (e.g. `tokens[0].credentials`).
    pub fn validate(&self, at: &str) -> Result<(), Problem> {
        self.entry().validate(at)
    }

    /// The secret this entry reads, as (backend, id), when it lives in a store that could also
    /// be a token store.
    pub fn identity(&self) -> Option<(&'static str, String)> {
        self.entry().identity().map(|id| (self.backend(), id))
    }

    /// The credential source.
    pub fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn CredentialSource> {
        self.entry().build(ctx)
    }
}

impl StoreConfig {
    /// Check the entry at `at` (e.g. `tokens[0].store`).
    pub fn validate(&self, at: &str) -> Result<(), Problem> {
        self.entry().validate(at)
    }

    /// Backend name and the store's identity.
    pub fn identity(&self) -> (&'static str, String) {
        (self.backend(), self.entry().identity())
    }

    /// Backend name and the store's loose identity ([`StoreEntry::loose_identity`]).
    pub fn loose_identity(&self) -> (&'static str, String) {
        (self.backend(), self.entry().loose_identity())
    }

    /// The store's contracts.
    pub fn build(&self, ctx: &BuildContext<'_>) -> StoreParts {
        self.entry().build(ctx)
    }
}

registry! {
    env: Env => env::Env;
    file: File => file::File;
    aws: Aws => aws::Aws, feature = "aws";
    vault: Vault => vault::Vault, feature = "vault";
    gcp: Gcp => gcp::Gcp, feature = "gcp";
    kubernetes: Kubernetes => kubernetes::Kubernetes, feature = "kubernetes";
}
