//! The rotation lease contract: serialise whole rotations of one token across runners, where a
//! backend can.
//!
//! A lease is a **value** ([`Lease`]) owned by the pass that took it: the pass takes it for the
//! version it decided from, re-reads and decides again under it, passes it to the write
//! ([`super::store::WriteMode`]), and hands it back when the run (alerts and recorded state
//! included) ends. The store object remembers nothing about it, so two passes over one token
//! in one process are two runners like any others.
//!
//! Who has one: the file store (a flock, so N runners on one host mint once) and GCP (an
//! etag-guarded annotation, since `AddSecretVersion` takes no condition). AWS and Vault have
//! none: their conditional write (the derived ClientRequestToken, `cas`) makes racing writers
//! converge.

use async_trait::async_trait;

use super::store::{Lease, StoreError, Version};

/// Rotation leases of one token.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Take the lease for a rotation decided from `base` (`None`: nothing stored). A live
    /// lease held by another runner from the same or a newer version is
    /// [`super::error::ErrorKind::Conflict`] (that runner's write is the rotation); one that
    /// cannot be had in time (a busy flock past `lock_timeout`) is another class.
    async fn acquire(&self, base: Option<&Version>) -> Result<Lease, StoreError>;
    /// Hand the lease back. A spent lease ([`Lease::is_spent`]) costs nothing; an unspent one
    /// is cleared where clearing takes a call. Never fails: a lease that cannot be cleared
    /// expires (an annotation) or dies with its descriptor (a flock).
    async fn release(&self, lease: Lease);
}
