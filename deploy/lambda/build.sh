#!/usr/bin/env bash
# Build the deployable Lambda zip (provided.al2023): the deepvue-rotator binary as `bootstrap`.
#
#   deploy/lambda/build.sh            # x86_64 -> target/lambda/deepvue-rotator/bootstrap.zip
#   ARCH=arm64 deploy/lambda/build.sh # Graviton
#   LEAN=1 deploy/lambda/build.sh     # only the aws backend and the Lambda mode (smaller, faster
#                                     # cold start); the file/env backends stay, the daemon,
#                                     # simulator, vault and gcp go
#
# Needs cargo-lambda (PyPI `cargo-lambda`, which brings zig for the glibc-compatible link):
# found as $CARGO_LAMBDA, in .tools/venv (installed by ./scripts/test.sh), or on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."

CL="${CARGO_LAMBDA:-}"
if [ -z "$CL" ]; then
  if [ -x .tools/venv/bin/cargo-lambda ]; then
    CL=.tools/venv/bin/cargo-lambda
    export PATH="$PWD/.tools/venv/bin:$PATH" # its zig
  elif command -v cargo-lambda >/dev/null; then
    CL=cargo-lambda
  else
    echo "build.sh: cargo-lambda not found; pip install cargo-lambda (or run ./scripts/test.sh)" >&2
    exit 1
  fi
fi

case "${ARCH:-x86_64}" in
  x86_64) arch_flag=--x86-64 ;;
  arm64) arch_flag=--arm64 ;;
  *) echo "build.sh: ARCH must be x86_64 or arm64" >&2; exit 1 ;;
esac

features=()
if [ -n "${LEAN:-}" ]; then
  features=(--no-default-features --features lambda)
fi
"$CL" lambda build --release "$arch_flag" --output-format zip --bin deepvue-rotator "${features[@]}"
zip=target/lambda/deepvue-rotator/bootstrap.zip
ls -l "$zip"
echo "deploy with: runtime provided.al2023, handler bootstrap, architecture ${ARCH:-x86_64}, zip $zip"
