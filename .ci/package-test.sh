#!/usr/bin/env bash
# Builds the .deb from the release binary (cargo deb) and checks it: control fields, conffiles,
# every installed path and its mode, maintainer scripts' syntax; then installs it into a
# scratch root (dpkg-deb -x), checks that the packaged configuration is valid, and smoke-tests
# the packaged binary. Fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo deb --no-build --strip -o target/debian/coedit.deb >/dev/null
deb=target/debian/coedit.deb
control=$(dpkg-deb -f "$deb")
for want in "Package: coedit" "Architecture: amd64" "Section: net"; do
  grep -qx "$want" <<<"$control" || { echo "FATAL: control lacks '$want'" >&2; exit 1; }
done
grep -q '^Depends: .*adduser' <<<"$control" || { echo "FATAL: Depends lacks adduser" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -e "$deb" "$tmp/DEBIAN"
grep -qx /etc/coedit/coedit.toml "$tmp/DEBIAN/conffiles" || { echo "FATAL: config is not a conffile" >&2; exit 1; }
for script in postinst prerm postrm; do
  sh -n "$tmp/DEBIAN/$script"
done
grep -q 'adduser --system' "$tmp/DEBIAN/postinst" || { echo "FATAL: postinst creates no user" >&2; exit 1; }
grep -q 'systemctl' "$tmp/DEBIAN/postinst" || { echo "FATAL: postinst does not enable the unit" >&2; exit 1; }
listing=$(dpkg-deb -c "$deb")
check_file() { # mode path
  grep -qE "^$1 .* \./$2\$" <<<"$listing" || { echo "FATAL: ./$2 missing or not $1" >&2; echo "$listing" >&2; exit 1; }
}
check_file -rwxr-xr-x usr/bin/coedit
check_file -rw-r----- etc/coedit/coedit.toml
check_file -rw-r--r-- usr/lib/systemd/system/coedit.service
for doc in README DEPLOY SECURITY OPERATIONS STORAGE; do
  check_file -rw-r--r-- "usr/share/doc/coedit/$doc.md"
done
root="$tmp/root"
dpkg-deb -x "$deb" "$root"
grep -q '^ExecStart=/usr/bin/coedit serve --config /etc/coedit/coedit.toml$' "$root/usr/lib/systemd/system/coedit.service"
"$root/usr/bin/coedit" --version
# The packaged configuration parses (unknown keys would be refused) and opens a store.
"$root/usr/bin/coedit" --config "$root/etc/coedit/coedit.toml" --data-dir "$tmp/data" check
.ci/smoke.sh "$root/usr/bin/coedit"
echo "package ok: $(du -h "$deb" | cut -f1) $deb"
