#!/usr/bin/env bash
# tests/yjs-interop/test.sh: runs the Yjs interoperability suite (yjs-interop.test.mjs, and
# cluster.test.mjs: three nodes on one nats-server, from $COEDIT_NATS_SERVER): the
# real npm clients (yjs, y-websocket's WebsocketProvider, @hocuspocus/provider's
# HocuspocusProvider, on the `ws` package) against real coedit servers that the suite starts on
# 127.0.0.1 from $COEDIT_BIN (default target/release/coedit at the repository root).
#
# It installs node and npm on a fresh Debian machine if they are missing, the suite's exact
# dependencies (`npm ci` from package-lock.json, when node_modules is absent or older than the
# lock file) and the token issuer's (protocol/issuers/node, which the suite imports by relative
# path to sign tokens), then runs `node --test`. Every step is bounded in time; servers left
# behind by a killed suite are stopped by id on exit; temporary files live in one directory,
# removed on exit. Fails loudly: a nonzero exit if any test failed or the suite crashed.
#
#   COEDIT_BIN=/path/to/coedit tests/yjs-interop/test.sh
#   YJS_INTEROP_SEED=N      replays the convergence test's random edits (printed as SEED=N)
#   YJS_INTEROP_KEEP=1      keeps the servers' logs and data (the path is printed)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
step_s=300    # longest any install step may take
suite_s=240   # longest the whole suite may take (it needs about a minute)
test_ms=90000 # longest one test may take

bin="${COEDIT_BIN:-target/release/coedit}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
if [ ! -x "$bin" ]; then
  echo "FATAL: no coedit binary at $bin (cargo build --release, or set COEDIT_BIN)" >&2
  exit 1
fi
export COEDIT_BIN="$bin"

# Everything temporary (the suite's key and data directories too) lives in one directory; the
# suite appends the id of every server it starts to the pid file.
work="$(mktemp -d "${TMPDIR:-/tmp}/coedit-yjs-interop.XXXXXX")"
export TMPDIR="$work"
export COEDIT_YJS_PIDFILE="$work/server-pids"
: >"$COEDIT_YJS_PIDFILE"

cleanup() {
  local pid
  while read -r pid; do
    # Only a process that is still a coedit server (the id may have been reused).
    if [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -Eq 'coedit serve|nats-server'; then
      echo "stopping server $pid left by the suite" >&2
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done <"$COEDIT_YJS_PIDFILE"
  if [ -n "${YJS_INTEROP_KEEP:-}" ]; then
    echo "kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

echo "== tools"
need=()
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  timeout "$step_s" apt-get update -q
  timeout "$step_s" apt-get install -y -q "${need[@]}"
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "FATAL: node $(node --version) is too old (20 or later: node --test, --test-force-exit)" >&2
  exit 1
fi
echo "node $(node --version), npm $(npm --version), coedit at $COEDIT_BIN"

# `npm ci` in $1 unless its node_modules was installed from the current lock file already
# (npm writes node_modules/.package-lock.json on every install).
npm_ci() {
  if [ -f "$1/node_modules/.package-lock.json" ] && [ "$1/node_modules/.package-lock.json" -nt "$1/package-lock.json" ]; then
    echo "$1: node_modules up to date"
  else
    (cd "$1" && timeout "$step_s" npm ci --no-audit --no-fund)
  fi
}

echo "== npm ci (tests/yjs-interop, protocol/issuers/node)"
npm_ci "$here"
npm_ci "$root/protocol/issuers/node"
(cd "$here" && node -p '["yjs", "y-websocket", "@hocuspocus/provider", "ws"].map((p) => p + " " + require("./node_modules/" + p + "/package.json").version).join(", ")')

echo "== node --test (yjs-interop.test.mjs, cluster.test.mjs)"
# The spec reporter's closing lines ("ℹ pass N", …) give the counts (with --test-force-exit a
# second reporter writing to a file may lose its closing lines).
status=0
(cd "$here" && timeout -k 10 "$suite_s" node --test --test-force-exit --test-timeout="$test_ms" \
  --test-reporter=spec yjs-interop.test.mjs cluster.test.mjs) 2>&1 | tee "$work/spec.out" || status=$?

count() { sed -n "s/^ℹ $1 \([0-9][0-9]*\)$/\1/p" "$work/spec.out" | tail -1; }
pass="$(count pass)" fail="$(count fail)" skip="$(count skipped)" cancelled="$(count cancelled)"
if [ -z "$pass" ] || [ -z "$fail" ]; then
  echo "FATAL: the suite ended without its summary (crashed, or timed out after ${suite_s}s; exit $status)" >&2
  exit 1
fi
fail=$((fail + ${cancelled:-0})) # tests that never ran (a failed before hook) count as failed
echo "yjs-interop: $pass passed, $fail failed, ${skip:-0} skipped"
if [ "$status" -ne 0 ] || [ "$fail" -ne 0 ]; then
  echo "FATAL: Yjs interoperability tests failed" >&2
  exit 1
fi
