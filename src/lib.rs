//! deepvue-rotator keeps Deepvue API access tokens fresh in the secret stores applications
//! already read.
//!
//! The crate is organised around one decision, made per configured token by [`rotate`]:
//! read the stored token document, decide whether it is due, mint a new token through the
//! [`deepvue`] authorize client, validate it, and write it back **conditionally** through a
//! [`store::TokenStore`]. Everything else — [`config`], [`credentials`], the CLI in [`cli`], the
//! HTTPS [`simulator`] — serves that decision. See `ARCHITECTURE.md` for the codemap and the
//! invariants.

pub mod alert;
pub mod aws;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod deepvue;
pub mod egress;
pub mod error;
pub mod lambda;
pub mod logging;
pub mod rotate;
pub mod simulator;
pub mod store;
pub mod tls;
pub mod token;
