#!/usr/bin/env bash
# protocol/issuers/test.sh: installs what the token issuers' tests need on a fresh Debian
# machine (node and npm, python3 and pip if missing; `npm ci` in node/; the Python
# dependencies pinned in python/pyproject.toml into python/.deps), then runs both suites
# (node --test, unittest) against real coedit servers that the suites start on 127.0.0.1 from
# $COEDIT_BIN (default target/release/coedit at the repository root). Every step is bounded in
# time; servers left behind by a killed suite are stopped by id on exit; fails loudly.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
step_s=300 # longest any install or test step may take

bin="${COEDIT_BIN:-target/release/coedit}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
if [ ! -x "$bin" ]; then
  echo "FATAL: no coedit binary at $bin (cargo build --release, or set COEDIT_BIN)" >&2
  exit 1
fi
export COEDIT_BIN="$bin"

# Everything temporary (the suites' key and data directories too) lives in one directory.
work="$(mktemp -d "${TMPDIR:-/tmp}/coedit-issuers.XXXXXX")"
export TMPDIR="$work"
export COEDIT_ISSUER_PIDFILE="$work/server-pids"
: >"$COEDIT_ISSUER_PIDFILE"

cleanup() {
  local pid
  while read -r pid; do
    # Only a process that is still a coedit server (the id may have been reused).
    if [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'coedit serve'; then
      echo "stopping coedit server $pid left by a suite" >&2
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done <"$COEDIT_ISSUER_PIDFILE"
  rm -rf "$work"
}
trap cleanup EXIT

echo "== tools"
need=()
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  timeout "$step_s" apt-get update -q
  timeout "$step_s" apt-get install -y -q "${need[@]}"
fi
echo "node $(node --version), npm $(npm --version), $(python3 --version), coedit at $COEDIT_BIN"

echo "== node: npm ci"
(cd "$here/node" && timeout "$step_s" npm ci --no-audit --no-fund)

echo "== python: dependencies from pyproject.toml into python/.deps"
python3 - "$here/python/pyproject.toml" >"$work/requirements.txt" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
PY
cat "$work/requirements.txt"
timeout "$step_s" python3 -m pip install --disable-pip-version-check --no-input --quiet \
  --root-user-action=ignore --upgrade --target "$here/python/.deps" -r "$work/requirements.txt"

status=0

echo "== node: node --test (test/issuer.test.mjs)"
(cd "$here/node" && timeout -k 10 "$step_s" node --test --test-reporter=tap test/issuer.test.mjs) \
  2>&1 | tee "$work/node.out" || status=1

echo "== python: unittest (test_issuer.py)"
(cd "$here/python" && PYTHONPATH="$here/python/.deps" timeout -k 10 "$step_s" python3 test_issuer.py) \
  2>&1 | tee "$work/python.out" || status=1

# One line per suite and a total, from the runners' own closing lines.
count() { sed -n "s/^$1 \([0-9][0-9]*\)$/\1/p" "$work/node.out" | tail -1; }
node_pass="$(count '# pass')" node_fail="$(count '# fail')" node_skip="$(count '# skipped')"
node_cancelled="$(count '# cancelled')" # tests that never ran (a failed before hook) count as failed
[ -n "$node_fail" ] && node_fail=$((node_fail + ${node_cancelled:-0}))
py_line="$(grep -E '^python: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$work/python.out" | tail -1 || true)"
if [ -z "$node_pass" ] || [ -z "$node_fail" ] || [ -z "$py_line" ]; then
  echo "FATAL: a suite ended without its summary (crashed or timed out)" >&2
  exit 1
fi
read -r py_pass py_fail py_skip < <(echo "$py_line" | sed -E 's/^python: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/')
echo "node: $node_pass passed, $node_fail failed, ${node_skip:-0} skipped"
echo "$py_line"
if [ "$status" -ne 0 ] || [ "$node_fail" -ne 0 ] || [ "$py_fail" -ne 0 ]; then
  echo "FATAL: token issuer tests failed" >&2
  echo "issuers: $((node_pass + py_pass)) passed, $((node_fail + py_fail)) failed"
  exit 1
fi
echo "issuers: $((node_pass + py_pass)) passed, $((node_fail + py_fail)) failed, $((${node_skip:-0} + py_skip)) skipped"
