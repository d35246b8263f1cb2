#!/bin/sh
# Install deepvue-rotator from a release, verifying the archive against the release's
# SHA256SUMS before anything is unpacked or installed.
#
#   curl -fsSL https://github.com/deepvue-rotator/deepvue-rotator/releases/latest/download/install.sh | sh
#   sh install.sh [--version vX.Y.Z] [--to DIR] [--man DIR]
#
# --version  a release tag (default: the latest release)
# --to       where the binary goes (default /usr/local/bin)
# --man      where the man pages go (default: none installed)
# DEEPVUE_ROTATOR_RELEASES overrides the releases URL (a mirror); it must be https://, or
# http:// to a loopback address (a local mirror, the project's tests).
set -eu

RELEASES=${DEEPVUE_ROTATOR_RELEASES:-https://github.com/deepvue-rotator/deepvue-rotator/releases}
VERSION=latest
TO=/usr/local/bin
MAN=

fail() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --version) [ $# -ge 2 ] || fail "--version needs a tag"; VERSION=$2; shift 2 ;;
    --to) [ $# -ge 2 ] || fail "--to needs a directory"; TO=$2; shift 2 ;;
    --man) [ $# -ge 2 ] || fail "--man needs a directory"; MAN=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) fail "unknown argument $1 (see --help)" ;;
  esac
done

case $RELEASES in
  https://*) ;;
  http://127.0.0.1:*|http://127.0.0.1/*|http://localhost:*|http://localhost/*|http://\[::1\]:*) ;;
  *) fail "$RELEASES: releases are fetched over https:// only (plain http only from a loopback mirror)" ;;
esac
case $(uname -s) in
  Linux) ;;
  *) fail "prebuilt binaries are for Linux; elsewhere build from source (cargo build --release)" ;;
esac
case $(uname -m) in
  x86_64|amd64) TARGET=x86_64-unknown-linux-gnu ;;
  aarch64|arm64) TARGET=aarch64-unknown-linux-gnu ;;
  *) fail "no prebuilt binary for $(uname -m); build from source (cargo build --release)" ;;
esac
command -v curl >/dev/null || fail "curl is required"
if command -v sha256sum >/dev/null; then
  sha() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null; then
  sha() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  fail "sha256sum (coreutils) or shasum is required to verify the download"
fi

if [ "$VERSION" = latest ]; then
  BASE=$RELEASES/latest/download
else
  BASE=$RELEASES/download/$VERSION
fi
ASSET=deepvue-rotator-$TARGET.tar.gz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fetch() { curl -fsSL --retry 3 --proto '=https,http' --proto-redir '=https' -o "$2" "$1" || fail "cannot download $1"; }
fetch "$BASE/SHA256SUMS" "$tmp/SHA256SUMS"
fetch "$BASE/$ASSET" "$tmp/$ASSET"

want=$(awk -v f="$ASSET" '$2 == f || $2 == "*" f { print $1 }' "$tmp/SHA256SUMS")
[ -n "$want" ] || fail "SHA256SUMS of $VERSION lists no $ASSET"
got=$(sha "$tmp/$ASSET")
[ "$got" = "$want" ] || fail "checksum mismatch for $ASSET: expected $want, got $got; nothing installed"

tar -xzf "$tmp/$ASSET" -C "$tmp"
dir=$tmp/deepvue-rotator-$TARGET
[ -f "$dir/deepvue-rotator" ] || fail "$ASSET holds no deepvue-rotator binary"
mkdir -p "$TO"
install -m 0755 "$dir/deepvue-rotator" "$TO/deepvue-rotator.new"
mv -f "$TO/deepvue-rotator.new" "$TO/deepvue-rotator"
if [ -n "$MAN" ]; then
  mkdir -p "$MAN"
  install -m 0644 "$dir"/man/*.1 "$MAN/"
fi
echo "install.sh: $("$TO/deepvue-rotator" --version) installed in $TO (sha256 $got verified)"
