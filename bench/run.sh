#!/usr/bin/env bash
# Benchmarks (see BENCHMARKS.md): builds the release binary, then measures whole-process runs
# against the built-in simulator and file stores on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
python3 bench/measure.py target/release/deepvue-rotator
