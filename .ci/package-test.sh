#!/usr/bin/env bash
# Checks the amd64 .deb built by .ci/dist.sh: control fields (the libc6 >= 2.28 dependency),
# conffiles, every installed path and its mode, maintainer scripts (syntax; the user is
# created; the service is not enabled; the next steps are printed); then unpacks it into a
# scratch root (dpkg-deb -x), checks that the packaged configuration is valid and safe (binds
# 127.0.0.1; the compliance lines parse once turned on), and smoke-tests the packaged binary.
# Fails loudly.
#   .ci/package-test.sh DEB
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$1
control=$(dpkg-deb -f "$deb")
for want in "Package: coedit" "Architecture: amd64" "Section: net"; do
  grep -qx "$want" <<<"$control" || { echo "FATAL: control lacks '$want'" >&2; exit 1; }
done
grep -q '^Depends: .*libc6 (>= 2.28)' <<<"$control" || { echo "FATAL: Depends lacks libc6 (>= 2.28)" >&2; exit 1; }
grep -q '^Depends: .*adduser' <<<"$control" || { echo "FATAL: Depends lacks adduser" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -e "$deb" "$tmp/DEBIAN"
grep -qx /etc/coedit/coedit.toml "$tmp/DEBIAN/conffiles" || { echo "FATAL: config is not a conffile" >&2; exit 1; }
for script in postinst prerm postrm; do
  [ -e "$tmp/DEBIAN/$script" ] && sh -n "$tmp/DEBIAN/$script"
done
grep -q 'adduser --system' "$tmp/DEBIAN/postinst" || { echo "FATAL: postinst creates no user" >&2; exit 1; }
# Not enabled on install: debhelper's snippet only re-enables a unit the admin had enabled
# ("debian-installed" guard), it never enables a new one.
grep -q 'deb-systemd-helper debian-installed coedit.service' "$tmp/DEBIAN/postinst" || {
  echo "FATAL: postinst enables the service on install" >&2
  exit 1
}
grep -q 'sudo systemctl enable --now coedit' "$tmp/DEBIAN/postinst" || { echo "FATAL: postinst does not tell the next steps" >&2; exit 1; }
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
grep -q '^bind = "127.0.0.1:8080"$' "$root/etc/coedit/coedit.toml" || { echo "FATAL: the packaged config does not bind 127.0.0.1" >&2; exit 1; }
"$root/usr/bin/coedit" --version
# The packaged configuration parses (unknown keys would be refused) and opens a store.
"$root/usr/bin/coedit" check --config "$root/etc/coedit/coedit.toml" --data-dir "$tmp/data"
# With authentication off, a public address is refused.
if out=$("$root/usr/bin/coedit" serve --bind 0.0.0.0:0 --data-dir "$tmp/data2" 2>&1); then
  echo "FATAL: served 0.0.0.0 with authentication off" >&2
  exit 1
fi
grep -q 'refusing to listen on 0.0.0.0:0 with authentication off' <<<"$out" || { echo "FATAL: $out" >&2; exit 1; }
.ci/smoke.sh "$root/usr/bin/coedit"
echo "package ok: $(du -h "$deb" | cut -f1) $deb"
