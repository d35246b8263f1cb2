//! What this binary is: version, git commit and the cargo features it was built with
//! (`--version`, the `build_info` metric).

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit it was built from (12 hex digits), or "unknown".
pub const COMMIT: &str = env!("DEEPVUE_ROTATOR_COMMIT");

/// The enabled cargo features of the ones that choose backends and modes, comma-separated.
pub fn features() -> String {
    [
        ("agent", cfg!(feature = "agent")),
        ("aws", cfg!(feature = "aws")),
        ("daemon", cfg!(feature = "daemon")),
        ("gcp", cfg!(feature = "gcp")),
        ("kubernetes", cfg!(feature = "kubernetes")),
        ("lambda", cfg!(feature = "lambda")),
        ("simulator", cfg!(feature = "simulator")),
        ("vault", cfg!(feature = "vault")),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| name)
    .collect::<Vec<_>>()
    .join(",")
}

/// `--version`'s text after the program name: `0.3.0 (commit 1a2b3c4d5e6f; features aws,vault)`.
pub fn long_version() -> String {
    let features = features();
    format!(
        "{VERSION} (commit {COMMIT}; features {})",
        if features.is_empty() {
            "none"
        } else {
            &features
        }
    )
}
