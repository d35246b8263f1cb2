#!/usr/bin/env bash
# Offline checks of terraform/ (providers cannot be downloaded here, so no `terraform init` /
# `validate` of the modules): installs its tools (idempotent), then runs
#   1. terraform fmt -check -recursive terraform/
#   2. checkov over terraform/ (0 failed checks; skips only inline, listed in module/example READMEs)
#   3. tests/terraform/test_iam.py          IAM actions / GCP permissions / Vault capabilities
#   4. tests/terraform/test_config_render.py the rendered configs are valid TOML the rotator loads
#   5. tests/terraform/test_moto_iam.py      real rotations of two tokens against moto with only the
#                                            module's policy, ARN-scoped (tests/terraform/moto_resource_arns.py
#                                            lets moto see the secret ARNs); a secret outside the map is denied
# and exits non-zero if any of them failed.
#
# Tools, in .tools/venv-tf inside the checkout (nothing system-wide):
#   checkov (PyPI), moto[server] + boto3 (PyPI), python-hcl2 (PyPI; installed with --target into
#   .tools/venv-tf/python-hcl2, because checkov's bc-python-hcl2 owns the same `hcl2` package).
# Also needs terraform on PATH and the rotator binary ($DEEPVUE_ROTATOR_BIN, default
# target/debug/deepvue-rotator; built by `cargo build`, not by this script).
set -uo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV_TF:-.tools/venv-tf}"
HCL2="$VENV/python-hcl2"
PIP_FLAGS=(--quiet --disable-pip-version-check)

die() { echo "test-terraform.sh: $*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is required (apt-get install python3 python3-venv)"
command -v terraform >/dev/null || die "terraform is required: install it from https://developer.hashicorp.com/terraform/install (fmt and the offline template rendering use it)"

if [ ! -x "$VENV/bin/python" ]; then
  echo "test-terraform.sh: creating $VENV" >&2
  python3 -m venv "$VENV" || die "python3 -m venv $VENV failed (apt-get install python3-venv)"
fi
if [ ! -x "$VENV/bin/checkov" ] || [ ! -x "$VENV/bin/moto_server" ] || ! "$VENV/bin/python" -c "import boto3" 2>/dev/null; then
  echo "test-terraform.sh: installing checkov, moto[server], boto3 into $VENV" >&2
  "$VENV/bin/pip" install "${PIP_FLAGS[@]}" "checkov>=3.2,<4" "moto[server]>=5.1,<6" "boto3>=1.34,<2" \
    || die "pip install checkov moto[server] boto3 into $VENV failed"
fi
if [ ! -f "$HCL2/hcl2/__init__.py" ]; then
  echo "test-terraform.sh: installing python-hcl2 into $HCL2" >&2
  "$VENV/bin/pip" install "${PIP_FLAGS[@]}" --target "$HCL2" "python-hcl2>=7,<9" \
    || die "pip install --target $HCL2 python-hcl2 failed"
fi

VENV="$(cd "$VENV" && pwd)"
HCL2="$VENV/python-hcl2"
export PYTHON_HCL2_PATH="$HCL2"
export MOTO_SERVER="$VENV/bin/moto_server"
export DEEPVUE_ROTATOR_BIN="${DEEPVUE_ROTATOR_BIN:-$PWD/target/debug/deepvue-rotator}"
PY="$VENV/bin/python"

failed=()
step() {
  local name="$1"; shift
  echo "==> $name"
  local t0=$SECONDS
  if "$@"; then
    echo "<== $name: ok ($((SECONDS - t0))s)"
  else
    echo "<== $name: FAILED" >&2
    failed+=("$name")
  fi
}

step "terraform fmt -check" terraform fmt -check -recursive -diff terraform/
step "checkov" "$VENV/bin/checkov" -d terraform --framework terraform --compact --quiet --skip-download
step "test_iam.py" "$PY" tests/terraform/test_iam.py
step "test_config_render.py" "$PY" tests/terraform/test_config_render.py
step "test_moto_iam.py" "$PY" tests/terraform/test_moto_iam.py

if [ ${#failed[@]} -gt 0 ]; then
  echo "test-terraform.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "test-terraform.sh: all terraform checks passed"
