//! Store contracts that report every operation and its latency to an [`Observer`] (the store
//! request counters and histograms of `engine::metrics`), delegating everything else unchanged.

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::document::TokenDocument;
use crate::core::lease::Leases;
use crate::core::observe::Observer;
use crate::core::parts::StoreParts;
use crate::core::state::{StateEtag, StatePolicy, StateRead, StateStore};
use crate::core::store::{Lease, StoreError, Stored, TokenStore, Version, WriteMode};

/// `parts`, each contract counted on `observer`.
pub fn observed(parts: StoreParts, observer: Arc<dyn Observer>) -> StoreParts {
    let counter = Counter {
        backend: parts.tokens.backend(),
        observer,
    };
    StoreParts {
        tokens: Arc::new(Tokens(parts.tokens, counter.clone())),
        leases: parts
            .leases
            .map(|l| Arc::new(Leased(l, counter.clone())) as Arc<dyn Leases>),
        state: Arc::new(State(parts.state, counter)),
        native: parts.native,
    }
}

#[derive(Clone)]
struct Counter {
    backend: &'static str,
    observer: Arc<dyn Observer>,
}

impl Counter {
    async fn count<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let r = call.await;
        let result = match &r {
            Ok(_) => "ok",
            Err(e) => e.kind.as_str(),
        };
        self.observer
            .store_call(self.backend, operation, result, started.elapsed());
        r
    }
}

struct Tokens(Arc<dyn TokenStore>, Counter);
struct Leased(Arc<dyn Leases>, Counter);
struct State(Arc<dyn StateStore>, Counter);

#[async_trait]
impl TokenStore for Tokens {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }

    fn secret_id(&self) -> String {
        self.0.secret_id()
    }

    fn is_named(&self, platform_name: &str) -> bool {
        self.0.is_named(platform_name)
    }

    async fn platform_name(&self) -> Result<Option<String>, StoreError> {
        self.0.platform_name().await
    }

    async fn read_current(&self) -> Result<Option<Stored>, StoreError> {
        self.1.count("read_current", self.0.read_current()).await
    }

    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError> {
        self.1
            .count("read_version", self.0.read_version(version))
            .await
    }

    async fn read_previous(&self, current: &Version) -> Result<Option<Stored>, StoreError> {
        self.1
            .count("read_version", self.0.read_previous(current))
            .await
    }

    fn changes(&self) -> Option<futures::stream::BoxStream<'static, ()>> {
        self.0.changes()
    }

    async fn write(&self, doc: &TokenDocument, mode: WriteMode<'_>) -> Result<Version, StoreError> {
        self.1.count("write", self.0.write(doc, mode)).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.1.count("check", self.0.check()).await
    }
}

#[async_trait]
impl Leases for Leased {
    async fn acquire(&self, base: Option<&Version>) -> Result<Lease, StoreError> {
        self.1.count("lock", self.0.acquire(base)).await
    }

    async fn release(&self, lease: Lease) {
        self.0.release(lease).await;
    }
}

#[async_trait]
impl StateStore for State {
    fn policy(&self) -> StatePolicy {
        self.0.policy()
    }

    fn capacity(&self) -> usize {
        self.0.capacity()
    }

    async fn read_state(&self) -> Result<StateRead, StoreError> {
        self.1.count("read_state", self.0.read_state()).await
    }

    async fn write_state(
        &self,
        bytes: Option<&[u8]>,
        etag: Option<&StateEtag>,
    ) -> Result<(), StoreError> {
        self.1
            .count("write_state", self.0.write_state(bytes, etag))
            .await
    }
}
