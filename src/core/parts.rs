//! What a backend builds for one token store: its token versions, and the contracts it can
//! also keep (leases, run state, a native rotation protocol). The registry builds it; the
//! engine uses it; nothing else names a backend.

use std::sync::Arc;

use super::lease::Leases;
use super::state::StateStore;
use super::store::TokenStore;
use super::trigger::NativeRotation;

/// One token's store, as contracts.
#[derive(Clone)]
pub struct StoreParts {
    /// Token versions.
    pub tokens: Arc<dyn TokenStore>,
    /// Rotation leases, where the backend has them.
    pub leases: Option<Arc<dyn Leases>>,
    /// Kept run state.
    pub state: Arc<dyn StateStore>,
    /// The platform's own rotation protocol, where it has one.
    pub native: Option<Arc<dyn NativeRotation>>,
}

impl StoreParts {
    /// A store that keeps versions and state in one object, with no lease and no native
    /// protocol.
    pub fn of<S: TokenStore + StateStore + 'static>(store: Arc<S>) -> Self {
        StoreParts {
            tokens: store.clone(),
            leases: None,
            state: store,
            native: None,
        }
    }

    /// With leases.
    pub fn with_leases(mut self, leases: Arc<dyn Leases>) -> Self {
        self.leases = Some(leases);
        self
    }

    /// With a native rotation protocol.
    pub fn with_native(mut self, native: Arc<dyn NativeRotation>) -> Self {
        self.native = Some(native);
        self
    }
}
