#!/usr/bin/env bash
# Installs the amd64 .deb on this machine and runs docs/DEPLOY.md's install and compliance
# steps verbatim, as an operator would: keys made by the coedit user, the packaged config's
# compliance lines turned on, the service started as its unit starts it, a token issued and
# used, the master key rotated online, the service stopped, the audit log verified. Each
# command below must appear, character for character, in docs/DEPLOY.md. CI has no systemd:
# `systemctl enable --now` / `stop` are replaced by running the unit's ExecStart as the
# coedit user and stopping it with SIGTERM. Needs root (CI is root). Removes the package, the
# user and its directories afterwards. Fails loudly.
#   .ci/deploy-test.sh DEB
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(realpath "$1")
doc=docs/DEPLOY.md

[ "$(id -u)" -eq 0 ] || { echo "FATAL: needs root (installs a package)" >&2; exit 1; }
if getent passwd coedit >/dev/null || [ -e /etc/coedit ]; then
  echo "FATAL: a coedit installation exists on this machine; not touching it" >&2
  exit 1
fi
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  dpkg --purge coedit >/dev/null 2>&1 || true
  userdel coedit 2>/dev/null || true
  getent group coedit >/dev/null && groupdel coedit 2>/dev/null || true
  rm -rf /etc/coedit /var/lib/coedit
}
trap cleanup EXIT

# step "COMMAND": runs a documented command (checked against the doc first).
step() {
  grep -qF -- "$1" "$doc" || { echo "FATAL: '$1' is not in $doc" >&2; exit 1; }
  echo "+ $1"
  bash -euo pipefail -c "$1"
}

# The documented `sudo apt install ./coedit_…deb`, with the package CI built.
grep -qF 'sudo apt install ./coedit_' "$doc"
install_out=$(dpkg -i "$deb" 2>&1)
echo "$install_out"
grep -q 'sudo systemctl enable --now coedit' <<<"$install_out" || {
  echo "FATAL: postinst did not tell the next steps" >&2
  exit 1
}
grep -q '^bind = "127.0.0.1:8080"' /etc/coedit/coedit.toml
step 'sudo install -d -o coedit -g coedit -m 0700 /etc/coedit/keys'
step 'sudo -u coedit coedit keygen --out /etc/coedit/keys'
for f in master.key sm2.pem hmac.key; do
  [ "$(stat -c '%U %a' /etc/coedit/keys/$f)" = "coedit 600" ] || { echo "FATAL: keys/$f" >&2; exit 1; }
done
step "sudo sed -i 's/^#sm //' /etc/coedit/coedit.toml"
grep -q '^mode = "sm2"' /etc/coedit/coedit.toml

# `sudo systemctl enable --now coedit`: the unit's ExecStart, as its User.
grep -qF 'sudo systemctl enable --now coedit' "$doc"
exec_start=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/system/coedit.service)
user=$(sed -n 's/^User=//p' /usr/lib/systemd/system/coedit.service)
sudo -u "$user" $exec_start >/tmp/coedit-deploy.out 2>/tmp/coedit-deploy.err &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS --max-time 2 http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat /tmp/coedit-deploy.err >&2; echo "FATAL: the service exited" >&2; exit 1; }
  sleep 0.1
done
step 'curl -s http://127.0.0.1:8080/readyz' | grep -q '"ready":true'

token=$(step "sudo -u coedit coedit token issue --sm2-key /etc/coedit/keys/sm2.pem --sub alice --tenant acme --grant 'notes-*=editor' --ttl 28800" | tail -1)
curl -fsS --max-time 10 -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"base_rev":0,"op":["deployed"]}' http://127.0.0.1:8080/api/docs/notes-1/ops | grep -q '"rev":1'
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/json' \
  -d '{"base_rev":1,"op":["x"]}' http://127.0.0.1:8080/api/docs/notes-1/ops)
[ "$code" = 401 ] || { echo "FATAL: an edit without a token got $code" >&2; exit 1; }

# Online rotation, as documented (the token line assigns ADMIN_TOKEN in the doc).
ADMIN_TOKEN=$(step 'sudo -u coedit coedit token issue --sm2-key /etc/coedit/keys/sm2.pem --sub ops --tenant acme --admin --ttl 600' | tail -1)
export ADMIN_TOKEN
grep -qF 'ADMIN_TOKEN=$(sudo -u coedit coedit token issue' "$doc"
step 'sudo -u coedit coedit rotate-master-key --key-file /etc/coedit/keys/master.key --url http://127.0.0.1:8080 --token "$ADMIN_TOKEN"'
[ "$(stat -c '%U %a' /etc/coedit/keys/master.key)" = "coedit 600" ]
grep -q '^2 ' /etc/coedit/keys/master.key || { echo "FATAL: the key file has no version 2" >&2; exit 1; }
curl -fsS --max-time 10 -H "Authorization: Bearer $token" http://127.0.0.1:8080/api/docs/notes-1 | grep -q '"text":"deployed"'

# `sudo systemctl stop coedit`: SIGTERM, as the unit's KillSignal.
grep -qF 'sudo systemctl stop coedit' "$doc"
kill -TERM "$pid"
wait "$pid"
pid=
step 'sudo -u coedit coedit audit verify --data-dir /var/lib/coedit --pubkey /etc/coedit/keys/sm2.pub.pem' | tee /tmp/coedit-verify.out
grep -q 'anchored checkpoints matched' /tmp/coedit-verify.out
grep -q 'PLAINTEXT\|deployed' -r /var/lib/coedit && { echo "FATAL: document text in the data directory" >&2; exit 1; }
echo "deploy steps ok"
