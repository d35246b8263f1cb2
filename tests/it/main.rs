//! One integration-test binary: the real `deepvue-rotator` against the built-in HTTPS Deepvue
//! simulator and real stores, and the shared scenario suite every backend runs.

mod admin;
mod agent;
mod alerts;
mod audit;
mod aws;
mod cli;
mod daemon;
mod docs;
mod engine;
mod exec;
mod fanout;
mod faults;
mod file_store;
mod gcp;
mod gcp_fake;
mod hardening;
mod hooks;
mod hostile;
mod kube_fake;
mod kubernetes;
mod lambda;
mod layout;
mod metrics;
mod moto;
mod openbao;
mod pubsub;
mod pubsub_fake;
mod receiver;
mod redaction;
mod scenarios;
mod support;
mod vault;
