//! One integration-test binary: the real `deepvue-rotator` against the built-in HTTPS Deepvue
//! simulator and real file stores, plus the store conformance suite.

mod alerts;
mod aws;
mod cli;
mod conformance;
mod daemon;
mod file_store;
mod gcp;
mod gcp_fake;
mod hardening;
mod hostile;
mod lambda;
mod layout;
mod moto;
mod openbao;
mod pubsub;
mod receiver;
mod redaction;
mod support;
mod vault;
