//! A `TokenStore` wrapper that reports every operation to an [`Observer`] (the daemon's store
//! request counters), delegating everything else unchanged.

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::document::TokenDocument;
use crate::core::observe::Observer;
use crate::core::state::RunState;
use crate::core::store::{
    RotationLock, StatePolicy, StateRead, StoreError, Stored, TokenStore, Version, WriteMode,
};

/// `inner`, counted.
pub struct ObservedStore {
    inner: Box<dyn TokenStore>,
    observer: Arc<dyn Observer>,
}

impl ObservedStore {
    /// Count `inner`'s operations on `observer`.
    pub fn new(inner: Box<dyn TokenStore>, observer: Arc<dyn Observer>) -> Self {
        ObservedStore { inner, observer }
    }

    fn count<T>(&self, operation: &'static str, r: &Result<T, StoreError>) {
        let result = match r {
            Ok(_) => "ok",
            Err(e) => e.kind.as_str(),
        };
        self.observer
            .store_call(self.inner.backend(), operation, result);
    }
}

#[async_trait]
impl TokenStore for ObservedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn secret_id(&self) -> String {
        self.inner.secret_id()
    }

    fn state_policy(&self) -> StatePolicy {
        self.inner.state_policy()
    }

    async fn read_current(&self) -> Result<Option<Stored>, StoreError> {
        let r = self.inner.read_current().await;
        self.count("read_current", &r);
        r
    }

    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError> {
        let r = self.inner.read_version(version).await;
        self.count("read_version", &r);
        r
    }

    async fn write(&self, doc: &TokenDocument, mode: WriteMode<'_>) -> Result<Version, StoreError> {
        let r = self.inner.write(doc, mode).await;
        self.count("write", &r);
        r
    }

    async fn lock(&self) -> Result<Option<RotationLock>, StoreError> {
        let r = self.inner.lock().await;
        self.count("lock", &r);
        r
    }

    async fn lock_from(
        &self,
        current: Option<&Version>,
    ) -> Result<Option<RotationLock>, StoreError> {
        let r = self.inner.lock_from(current).await;
        self.count("lock", &r);
        r
    }

    async fn check(&self) -> Result<(), StoreError> {
        let r = self.inner.check().await;
        self.count("check", &r);
        r
    }

    async fn read_state(&self) -> Result<StateRead, StoreError> {
        let r = self.inner.read_state().await;
        self.count("read_state", &r);
        r
    }

    async fn write_state(&self, state: &RunState, base: &StateRead) -> Result<(), StoreError> {
        let r = self.inner.write_state(state, base).await;
        self.count("write_state", &r);
        r
    }
}
