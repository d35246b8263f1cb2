#!/usr/bin/env bash
# Benchmarks (see BENCHMARKS.md): builds the release binary, then measures whole-process runs
# against the built-in simulator and file stores, then the aws backend against moto_server and
# the Lambda handler's init time, then the vault backend against an OpenBao dev server, then
# the gcp backend against the tests' Secret Manager fake (examples/gcp_fake.rs), fan-out, the
# kubernetes backend against the tests' API fake (examples/kube_fake.rs), then the daemon
# (idle, churn, /metrics; IDLE=<seconds> of idle window, default 600), then the agent against
# the AWS Secrets Manager Agent (bench/agent.py). moto and bao come from
# .tools/venv (./scripts/test.sh installs them). With OLD_BIN=<an older release binary> it
# first pairs that binary against this one (bench/ab.py).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo build --release --quiet --example gcp_fake
cargo build --release --quiet --example kube_fake
cargo build --release --quiet --example agent_load
MOTO="${MOTO_SERVER:-.tools/venv/bin/moto_server}"
[ -x "$MOTO" ] || { echo "bench: moto_server not found; run ./scripts/test.sh first" >&2; exit 1; }
if [ -n "${OLD_BIN:-}" ]; then
  python3 bench/ab.py "$OLD_BIN" target/release/deepvue-rotator "$MOTO" 30
  echo
fi
python3 bench/measure.py target/release/deepvue-rotator
echo
python3 bench/aws.py target/release/deepvue-rotator "$MOTO"
echo
BAO_BIN="${BAO:-.tools/venv/bin/bao}"
[ -x "$BAO_BIN" ] || { echo "bench: bao not found; run ./scripts/test.sh first" >&2; exit 1; }
python3 bench/vault.py target/release/deepvue-rotator "$BAO_BIN"
python3 bench/gcp.py target/release/deepvue-rotator target/release/examples/gcp_fake
echo
python3 bench/fanout.py target/release/deepvue-rotator "$MOTO" "$BAO_BIN" target/release/examples/gcp_fake
echo
python3 bench/kubernetes.py target/release/deepvue-rotator target/release/examples/kube_fake
echo
python3 bench/daemon.py target/release/deepvue-rotator "${IDLE:-600}"
echo
python3 bench/operations.py target/release/deepvue-rotator 5
echo
# The agent against the AWS Secrets Manager Agent (crates.io aws_secretsmanager_agent), built
# once into .tools/aws-agent (a release build of the AWS SDK: ~6 min on 2 cores).
AWS_SM_AGENT="${AWS_SM_AGENT:-.tools/aws-agent/bin/aws_secretsmanager_agent}"
if [ ! -x "$AWS_SM_AGENT" ]; then
  cargo install --quiet --locked --root .tools/aws-agent aws_secretsmanager_agent
fi
python3 bench/agent.py target/release/deepvue-rotator "$MOTO" "$AWS_SM_AGENT" target/release/examples/agent_load 5 5
