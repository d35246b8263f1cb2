//! Fan-out: the primary store's current token copied to every replica store of a token
//! (`stores = [primary, replica, …]`), concurrently, each write conditional on the version
//! that replica held when it was read. Deepvue is never called here: a replica that missed a
//! rotation (its write failed, it was added later, it was restored from a backup) is healed
//! by the next pass from what the primary holds.
//!
//! A replica never regresses: one that already holds the primary's token is left alone, and
//! one holding a token issued after the primary's (another rotator wrote it) is reported and
//! left alone too. A replica with leases (a file store's flock, the GCP annotation) is written
//! under its own lease, taken from the version read; one whose lease another runner holds is
//! being copied to right now (`busy`, not a failure). A lost race (another runner copied
//! first) ends as whatever the replica holds then.

use futures::future::join_all;
use tracing::{Instrument, info, warn};

use crate::core::document::TokenDocument;
use crate::core::error::ErrorKind;
use crate::core::parts::StoreParts;
use crate::core::result::{Failure, Held, Replica, ReplicaState};
use crate::core::store::{Lease, StoreError, Stored, TokenStore, Version, WriteMode};

/// The token a fan-out is for: its name (every failure names it), its primary and its
/// replicas.
pub struct Fan<'a> {
    /// The token's name.
    pub name: &'a str,
    /// The primary store.
    pub primary: &'a StoreParts,
    /// The replica stores.
    pub replicas: &'a [StoreParts],
}

impl Fan<'_> {
    fn failure(&self, kind: ErrorKind, message: impl std::fmt::Display) -> Failure {
        Failure {
            kind,
            message: format!("token `{}`: {message}", self.name),
            deepvue_detail: None,
        }
    }
}

/// What each replica held when read (in configuration order): the versions its copy will be
/// conditional on. Read while the primary is being decided and minted, so the fan-out's wall
/// time after the primary's write is one write, not a read and a write.
pub type Reads = Vec<Result<Option<Stored>, StoreError>>;

/// Read every replica's current version, concurrently: each read is a task of its own, so
/// on a multi-threaded runtime a replica's client set-up (its TLS roots, SDK configuration,
/// first handshake) runs beside the primary's decision and mint rather than after it.
pub async fn read(job: &Fan<'_>) -> Reads {
    let tasks: Vec<_> = job
        .replicas
        .iter()
        .map(|p| {
            let tokens = p.tokens.clone();
            tokio::spawn(async move { tokens.read_current().await }.in_current_span())
        })
        .collect();
    join_all(tasks)
        .await
        .into_iter()
        .zip(job.replicas)
        .map(|(joined, p)| {
            joined.unwrap_or_else(|e| {
                Err(StoreError::new(
                    p.tokens.backend(),
                    p.tokens.secret_id(),
                    ErrorKind::Transient,
                    format!("the replica read did not finish: {e}"),
                ))
            })
        })
        .collect()
}

/// Copy the primary's current token to every replica whose read is in `reads`; one entry per
/// replica, in configuration order. Nothing to do (an empty list) for a token with one store.
///
/// `known` is the primary's current token when the pass already holds it (found fresh, or
/// its own write); otherwise the primary is read here.
pub async fn copy(job: &Fan<'_>, reads: Reads, known: Option<TokenDocument>) -> Vec<Replica> {
    if job.replicas.is_empty() {
        return Vec::new();
    }
    if let Some(doc) = known {
        let source = Ok(doc);
        return join_all(
            job.replicas
                .iter()
                .zip(reads)
                .map(|(parts, current)| one(job, parts, current, &source)),
        )
        .await;
    }
    let source = match job.primary.tokens.read_current().await {
        Ok(Some(Stored {
            document: Ok(doc), ..
        })) => Ok(doc),
        Ok(_) => Err(None),
        Err(e) => Err(Some(job.failure(
            e.kind,
            format!("cannot read the primary store to copy it to the replicas: {e}"),
        ))),
    };
    join_all(
        job.replicas
            .iter()
            .zip(reads)
            .map(|(parts, current)| one(job, parts, current, &source)),
    )
    .await
}

async fn one(
    job: &Fan<'_>,
    parts: &StoreParts,
    current: Result<Option<Stored>, StoreError>,
    source: &Result<TokenDocument, Option<Failure>>,
) -> Replica {
    let store = parts.tokens.as_ref();
    let mut replica = Replica {
        backend: store.backend(),
        secret_id: store.secret_id(),
        state: ReplicaState::NoSource,
        held: None,
    };
    let fail = |kind: ErrorKind, what: String| {
        job.failure(
            kind,
            format!(
                "replica {} `{}`: {what}",
                store.backend(),
                store.secret_id()
            ),
        )
    };
    let current = match current {
        Ok(c) => c,
        Err(e) => {
            replica.state = ReplicaState::Failed(fail(e.kind, e.to_string()));
            return replica;
        }
    };
    replica.held = current
        .as_ref()
        .map(|s| Held::new(s.version.clone(), s.document.as_ref().ok()));
    let doc = match source {
        Ok(doc) => doc,
        Err(None) => return replica,
        Err(Some(f)) => {
            replica.state = ReplicaState::Failed(f.clone());
            return replica;
        }
    };
    if let Some(state) = compare(current.as_ref(), doc) {
        replica.state = state;
        if replica.state == ReplicaState::Newer {
            warn!(
                replica = %format!("{} {}", store.backend(), store.secret_id()),
                "the replica holds a token issued after the primary's; left alone"
            );
        }
        return replica;
    }
    let expected = current.as_ref().map(|s| s.version.clone());
    let mut lease = match &parts.leases {
        None => None,
        Some(leases) => match leases.acquire(expected.as_ref()).await {
            Ok(l) => Some(l),
            Err(e) if e.kind == ErrorKind::Conflict => {
                info!(error = %e, "another runner is copying to this replica right now");
                replica.state = ReplicaState::Busy;
                return replica;
            }
            Err(e) => {
                replica.state = ReplicaState::Failed(fail(e.kind, e.to_string()));
                return replica;
            }
        },
    };
    write(
        store,
        doc,
        &mut replica,
        expected.as_ref(),
        lease.as_mut(),
        &fail,
    )
    .await;
    if let (Some(lease), Some(leases)) = (lease, &parts.leases) {
        leases.release(lease).await;
    }
    replica
}

/// The conditional write of `doc` over `expected`, and what the replica holds after it.
async fn write(
    store: &dyn TokenStore,
    doc: &TokenDocument,
    replica: &mut Replica,
    expected: Option<&Version>,
    lease: Option<&mut Lease>,
    fail: &(dyn Fn(ErrorKind, String) -> Failure + Sync),
) {
    let mode = WriteMode::from_current(expected, lease.as_deref());
    match store.write(doc, mode).await {
        Ok(v) => {
            info!(
                replica = %format!("{} {}", store.backend(), store.secret_id()),
                version = %v,
                "copied the primary's token to the replica"
            );
            if let Some(l) = lease {
                l.spend();
            }
            replica.state = ReplicaState::Copied;
            replica.held = Some(Held::new(v, Some(doc)));
        }
        // Another runner wrote there first: what it holds now decides.
        Err(e) if e.kind == ErrorKind::Conflict => match store.read_current().await {
            Ok(now) => {
                replica.held = now
                    .as_ref()
                    .map(|s| Held::new(s.version.clone(), s.document.as_ref().ok()));
                replica.state = compare(now.as_ref(), doc).unwrap_or_else(|| {
                    ReplicaState::Failed(fail(
                        ErrorKind::Conflict,
                        format!("{e}; it still holds an older token"),
                    ))
                });
            }
            Err(read) => {
                replica.state = ReplicaState::Failed(fail(read.kind, read.to_string()));
            }
        },
        Err(e) => replica.state = ReplicaState::Failed(fail(e.kind, e.to_string())),
    }
}

/// Whether a replica holding `current` needs `doc`: `None` to write it, or what it is. Two
/// tokens minted within one second share their times: identity is the token itself.
fn compare(current: Option<&Stored>, doc: &TokenDocument) -> Option<ReplicaState> {
    let held = current.and_then(|s| s.document.as_ref().ok())?;
    if held.same_token(doc) {
        Some(ReplicaState::InSync)
    } else if held.issued_at > doc.issued_at {
        Some(ReplicaState::Newer)
    } else {
        None
    }
}

/// One line per replica that is not in sync, for logs and reports.
pub fn describe(replicas: &[Replica]) -> Option<String> {
    let failed = replicas
        .iter()
        .filter(|r| matches!(r.state, ReplicaState::Failed(_)))
        .count();
    (failed > 0).then(|| format!("{failed} of {} replicas failed", replicas.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn doc(issued: i64) -> TokenDocument {
        let t = chrono::DateTime::from_timestamp(issued, 0).unwrap_or_default();
        TokenDocument {
            access_token: SecretString::from(format!("t{issued}")),
            token_type: "bearer".into(),
            expiry: t + chrono::Duration::hours(24),
            issued_at: t,
            x_api_key: None,
        }
    }

    fn stored(d: TokenDocument) -> Stored {
        Stored::new(Version("1".into()), Ok(d))
    }

    #[test]
    fn a_replica_is_written_only_with_a_newer_token() {
        let primary = doc(1_000);
        assert_eq!(compare(None, &primary), None, "empty: written");
        assert_eq!(compare(Some(&stored(doc(500))), &primary), None, "older");
        assert_eq!(
            compare(Some(&stored(doc(1_000))), &primary),
            Some(ReplicaState::InSync)
        );
        assert_eq!(
            compare(Some(&stored(doc(2_000))), &primary),
            Some(ReplicaState::Newer),
            "never regresses"
        );
        let mut same_second = doc(1_000);
        same_second.access_token = SecretString::from("another".to_string());
        assert_eq!(
            compare(Some(&stored(same_second)), &primary),
            None,
            "another token of the same second is replaced"
        );
    }
}
