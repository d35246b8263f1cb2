#!/usr/bin/env bash
# Release checks that run offline: the dependency tree's licenses, banned crates and sources
# against deny.toml (`cargo deny --offline check licenses bans sources`; advisories need the
# RustSec database from the network and run in the release workflow).
#
# Installs cargo-deny (crates.io, pinned below) into .tools/cargo once: a build of ~4 minutes
# on 2 cores, skipped when the pinned version is there.
set -euo pipefail
cd "$(dirname "$0")/.."

DENY_VERSION=0.20.2
DENY=.tools/cargo/bin/cargo-deny
if [ ! -x "$DENY" ] || [ "$("$DENY" --version 2>/dev/null)" != "cargo-deny $DENY_VERSION" ]; then
  echo "test-release.sh: installing cargo-deny $DENY_VERSION into .tools/cargo (one-time build)" >&2
  cargo install --quiet --locked --root .tools/cargo "cargo-deny@$DENY_VERSION"
fi
# Every crate of every feature and target in deny.toml, fetched from crates.io first so the
# check itself runs offline.
cargo fetch --quiet
"$DENY" --offline check licenses bans sources
echo "test-release.sh: licenses, bans and sources ok"
