#!/usr/bin/env bash
# The docs: every relative link of every Markdown file resolves (files and #headings;
# scripts/check_docs.py, offline), and the book in docs/ builds with mdBook into target/book.
# The doc claims (config keys, `toml config` blocks, --json fields, metric names) are tested by
# tests/it/docs.rs in the cargo test run.
#
# Installs mdBook (crates.io, pinned below) into .tools/cargo once: a build of ~3 minutes on 2
# cores, skipped when the pinned version is there.
set -euo pipefail
cd "$(dirname "$0")/.."

MDBOOK_VERSION=0.5.4
MDBOOK=.tools/cargo/bin/mdbook
if [ ! -x "$MDBOOK" ] || [ "$("$MDBOOK" --version 2>/dev/null)" != "mdbook v$MDBOOK_VERSION" ]; then
  echo "test-docs.sh: installing mdbook $MDBOOK_VERSION into .tools/cargo (one-time build)" >&2
  cargo install --quiet --debug --locked --root .tools/cargo "mdbook@$MDBOOK_VERSION"
fi
python3 scripts/check_docs.py
"$MDBOOK" build docs
echo "test-docs.sh: the book builds into target/book"
