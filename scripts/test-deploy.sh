#!/usr/bin/env bash
# Checks of deploy/: the systemd units' sandboxing score (systemd-analyze security, offline).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null || {
  echo "test-deploy.sh: systemd-analyze is required (apt-get install systemd)" >&2
  exit 1
}
for unit in deploy/systemd/deepvue-rotator.service deploy/systemd/deepvue-rotator-once.service; do
  # --threshold=15: fail when the exposure score is above 1.5.
  if ! out=$(systemd-analyze security --offline=yes --threshold=15 "$unit" 2>&1); then
    echo "$out" >&2
    echo "test-deploy.sh: $unit scores above 1.5" >&2
    exit 1
  fi
  echo "test-deploy.sh: $(echo "$out" | grep 'Overall exposure level')"
done
