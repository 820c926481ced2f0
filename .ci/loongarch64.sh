#!/usr/bin/env bash
# Cross-builds coedit for Loongson (loongarch64-unknown-linux-gnu) and smoke-tests the binary
# under qemu-loongarch64 (.ci/smoke.sh: start, /healthz, one edit, SIGTERM, restart).
#
# Nothing here is a stock cross toolchain, so each missing piece is made from what this machine
# can reach (see docs/DEPLOY.md, "Loongson"):
# - rustup has no rust-std for the target (HTTP 404): the standard library is built from
#   source (`-Zbuild-std`, the `rust-src` component; RUSTC_BOOTSTRAP=1 lets the pinned stable
#   toolchain take the -Z flags).
# - Debian 12 has no LoongArch cross gcc: rust-lld links, against a glibc sysroot unpacked
#   from Debian's loong64 packages (libc6, libc6-dev, libgcc-s1, libgcc-N-dev; unstable is the
#   only suite that builds loong64), with the C runtime objects passed explicitly.
# - Debian 12's qemu-user 7.2 stops at the first LSX vector instruction, which Debian's loong64
#   glibc uses: qemu-loongarch64 comes from Debian 13's qemu-user (statically linked).
# Usage: .ci/loongarch64.sh [WORKDIR]   (default target/loongarch64-ci)
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=loongarch64-unknown-linux-gnu
WORK=${1:-target/loongarch64-ci}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
SYSROOT=$WORK/sysroot

# fetch SUITE ARCH PACKAGE...: unpacks the current version of each package into $SYSROOT (or,
# for amd64, into $WORK/host), reading the file names from the suite's package index.
fetch() {
  local suite=$1 arch=$2
  shift 2
  local index=$WORK/Packages-$suite-$arch
  [ -s "$index" ] || curl -fsS "$MIRROR/dists/$suite/main/binary-$arch/Packages.xz" | xz -dc >"$index"
  local dest=$SYSROOT
  [ "$arch" = amd64 ] && dest=$WORK/host
  mkdir -p "$dest"
  for pkg in "$@"; do
    local file
    file=$(awk -v p="Package: $pkg" 'BEGIN { RS = "" } index($0, p "\n") == 1 {
        for (i = 1; i <= NF; i++) if ($i == "Filename:") { print $(i + 1); exit } }' "$index")
    if [ -z "$file" ]; then
      echo "FATAL: $pkg not found in $suite/$arch" >&2
      exit 1
    fi
    echo "  $suite/$arch: $file"
    curl -fsS -o "$WORK/pkg.deb" "$MIRROR/$file"
    dpkg-deb -x "$WORK/pkg.deb" "$dest"
  done
  rm -f "$WORK/pkg.deb"
}

echo "-- sysroot and emulator from Debian's archive"
if [ ! -e "$SYSROOT/usr/lib/loongarch64-linux-gnu/Scrt1.o" ]; then
  index=$WORK/Packages-sid-loong64
  curl -fsS "$MIRROR/dists/sid/main/binary-loong64/Packages.xz" | xz -dc >"$index"
  # The newest libgcc-N-dev: the one whose gcc provides libgcc-s1.
  libgcc_dev=$(grep -o '^Package: libgcc-[0-9]*-dev$' "$index" | cut -d' ' -f2 | sort -V | tail -1)
  fetch sid loong64 libc6 libc6-dev libgcc-s1 "$libgcc_dev"
  # Merged /usr: the loader path inside libc.so is /lib64/…
  ln -sfn usr/lib64 "$SYSROOT/lib64"
  ln -sfn usr/lib "$SYSROOT/lib"
fi
[ -x "$WORK/host/usr/bin/qemu-loongarch64" ] || fetch trixie amd64 qemu-user
QEMU=$WORK/host/usr/bin/qemu-loongarch64
"$QEMU" --version | head -1

echo "-- build std and coedit for $TARGET"
rustup component add rust-src
LIB=$SYSROOT/usr/lib/loongarch64-linux-gnu
GCC=$(ls -d "$SYSROOT"/usr/lib/gcc/loongarch64-linux-gnu/* | sort -V | tail -1)
LLD=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld
flags=(
  -C linker-flavor=ld.lld
  "-Zpre-link-arg=--sysroot=$SYSROOT"
  -Zpre-link-arg=-dynamic-linker=/lib64/ld-linux-loongarch-lp64d.so.1
  "-Zpre-link-arg=$LIB/Scrt1.o" "-Zpre-link-arg=$LIB/crti.o" "-Zpre-link-arg=$GCC/crtbeginS.o"
  "-Zpre-link-arg=-L$LIB" "-Zpre-link-arg=-L$GCC"
  -C "link-arg=$GCC/crtendS.o" -C "link-arg=$LIB/crtn.o"
)
RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_LOONGARCH64_UNKNOWN_LINUX_GNU_LINKER="$LLD" \
  CARGO_TARGET_LOONGARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="${flags[*]}" \
  cargo build --release --locked -Zbuild-std=std,panic_abort --target "$TARGET" --bin coedit
BIN=target/$TARGET/release/coedit
file "$BIN" 2>/dev/null || true

echo "-- smoke test under qemu-loongarch64"
.ci/smoke.sh "$BIN" "$QEMU" -L "$SYSROOT"
