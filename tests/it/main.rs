//! One integration-test binary: the real `deepvue-rotator` against the built-in HTTPS Deepvue
//! simulator and real file stores, plus the store conformance suite.

mod cli;
mod conformance;
mod file_store;
mod redaction;
mod support;
