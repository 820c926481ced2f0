#!/usr/bin/env bash
# Builds every shipped artifact into dist/ and checks that each runs where 信创 customers deploy
# (Kylin V10 / UOS V20: glibc 2.28):
#   coedit-VERSION-x86_64-linux-gnu        glibc >= 2.28 (cargo zigbuild, target x86_64-unknown-linux-gnu.2.28)
#   coedit-VERSION-aarch64-linux-gnu       glibc >= 2.28 (Kunpeng/Phytium)
#   coedit-VERSION-loongarch64-linux-musl  static, no C library needed (Loongson; glibc has no
#                                          LoongArch port before 2.36, so no build can need 2.28)
#   coedit_VERSION-1_amd64.deb, coedit_VERSION-1_arm64.deb   Depends: libc6 (>= 2.28), adduser
#   SHA256SUMS
# Checks: the highest GLIBC_ symbol version of each dynamic binary is at most 2.28 and the
# musl binary has no interpreter (static); each .deb states the libc6 dependency its binary
# needs. Smoke tests are the caller's (.ci/run runs .ci/smoke.sh on each, under qemu for the
# foreign ones). Installs what it needs: zig (PyPI `ziglang`), cargo-zigbuild (crates.io),
# the aarch64 rust-std and rust-src (LoongArch std is built from source: rustup has no
# rust-std for it here). Fails loudly.
#   .ci/dist.sh [OUT]   (default dist)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-dist}
ZIG_VERSION=0.15.2
ZIGBUILD_VERSION=0.24.1
MAX_GLIBC=2.28
VERSION=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)

echo "-- tools"
python3 -m ziglang version >/dev/null 2>&1 || python3 -m pip install --quiet "ziglang==$ZIG_VERSION"
command -v cargo-zigbuild >/dev/null || cargo install cargo-zigbuild --locked --version "$ZIGBUILD_VERSION"
rustup target add aarch64-unknown-linux-gnu >/dev/null
rustup component add rust-src >/dev/null
echo "zig $(python3 -m ziglang version), $(cargo zigbuild --help | head -1 | tr -d '\n')"

# Shipped binaries carry no symbols (the .deb and the tarballs stay small); the test build in
# target/release keeps its line tables.
export CARGO_PROFILE_RELEASE_STRIP=symbols

echo "-- x86_64, glibc $MAX_GLIBC"
cargo zigbuild --release --locked --target "x86_64-unknown-linux-gnu.$MAX_GLIBC" --bin coedit
echo "-- aarch64, glibc $MAX_GLIBC"
cargo zigbuild --release --locked --target "aarch64-unknown-linux-gnu.$MAX_GLIBC" --bin coedit
echo "-- loongarch64, static musl (std built from source)"
RUSTC_BOOTSTRAP=1 cargo zigbuild --release --locked --target loongarch64-unknown-linux-musl \
  -Zbuild-std=std,panic_abort --bin coedit

rm -rf "$OUT"
mkdir -p "$OUT"
cp target/x86_64-unknown-linux-gnu/release/coedit "$OUT/coedit-$VERSION-x86_64-linux-gnu"
cp target/aarch64-unknown-linux-gnu/release/coedit "$OUT/coedit-$VERSION-aarch64-linux-gnu"
cp target/loongarch64-unknown-linux-musl/release/coedit "$OUT/coedit-$VERSION-loongarch64-linux-musl"

# highest_glibc BINARY: the highest GLIBC_x.y version its dynamic symbols need.
highest_glibc() {
  objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1
}
for arch in x86_64 aarch64; do
  bin="$OUT/coedit-$VERSION-$arch-linux-gnu"
  need=$(highest_glibc "$bin")
  if [ "$(printf '%s\n%s\n' "$need" "$MAX_GLIBC" | sort -V | tail -1)" != "$MAX_GLIBC" ]; then
    echo "FATAL: $bin needs GLIBC_$need, above $MAX_GLIBC" >&2
    objdump -T "$bin" | grep "GLIBC_$need" >&2
    exit 1
  fi
  echo "$(basename "$bin"): highest symbol version GLIBC_$need (<= $MAX_GLIBC)"
done
la="$OUT/coedit-$VERSION-loongarch64-linux-musl"
if readelf -l "$la" | grep -q 'INTERP'; then
  echo "FATAL: $la has a program interpreter: not static" >&2
  exit 1
fi
readelf -d "$la" | grep -q NEEDED && { echo "FATAL: $la needs shared libraries" >&2; exit 1; }
echo "$(basename "$la"): static, no interpreter, no shared libraries"

echo "-- Debian packages"
for pair in x86_64:amd64 aarch64:arm64; do
  triple=${pair%%:*}-unknown-linux-gnu
  deb="$OUT/coedit_${VERSION}-1_${pair##*:}.deb"
  cargo deb --no-build --no-strip --target "$triple" -o "$deb" >/dev/null
  depends=$(dpkg-deb -f "$deb" Depends)
  grep -q "libc6 (>= $MAX_GLIBC)" <<<"$depends" || {
    echo "FATAL: $deb depends on '$depends', not libc6 (>= $MAX_GLIBC)" >&2
    exit 1
  }
  [ "$(dpkg-deb -f "$deb" Architecture)" = "${pair##*:}" ] || { echo "FATAL: $deb architecture" >&2; exit 1; }
  echo "$(basename "$deb"): Depends: $depends"
done

(cd "$OUT" && sha256sum coedit* >SHA256SUMS)
ls -l "$OUT"
