#!/usr/bin/env bash
# Provides qemu-loongarch64 for smoke-testing the Loongson binary and prints its path. Debian
# 12's qemu-user 7.2 stops at the first LSX vector instruction ("Illegal instruction"), so the
# emulator comes from Debian 13's qemu-user 10.0 (statically linked: runs on Debian 12),
# unpacked from the archive into WORKDIR, not installed. Fails loudly.
#   .ci/qemu-loongarch64.sh [WORKDIR]   (default target/qemu-loongarch64)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-target/qemu-loongarch64}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
QEMU=$WORK/host/usr/bin/qemu-loongarch64
if [ ! -x "$QEMU" ]; then
  index=$WORK/Packages-trixie-amd64
  [ -s "$index" ] || curl -fsS "$MIRROR/dists/trixie/main/binary-amd64/Packages.xz" | xz -dc >"$index"
  file=$(awk 'BEGIN { RS = "" } index($0, "Package: qemu-user\n") == 1 {
      for (i = 1; i <= NF; i++) if ($i == "Filename:") { print $(i + 1); exit } }' "$index")
  [ -n "$file" ] || { echo "FATAL: qemu-user not found in trixie/amd64" >&2; exit 1; }
  echo "  trixie/amd64: $file" >&2
  curl -fsS -o "$WORK/qemu-user.deb" "$MIRROR/$file"
  dpkg-deb -x "$WORK/qemu-user.deb" "$WORK/host"
  rm -f "$WORK/qemu-user.deb"
fi
"$QEMU" --version | head -1 >&2
echo "$QEMU"
