#!/usr/bin/env bash
# Smoke test of one coedit binary (optionally run through an emulator, e.g. qemu-aarch64):
# start on 127.0.0.1, /healthz, one edit over REST, read it back, SIGTERM → exit 0, restart
# on the same data and find the edit again. Bounded in time; fails loudly.
#   .ci/smoke.sh BINARY [RUNNER...]
set -euo pipefail
bin=$1
shift
runner=("$@")
dir=$(mktemp -d)
trap 'kill -9 "${pid:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
label="${runner[*]:-native} $(basename "$bin")"

start() {
  : >"$dir/out"
  "${runner[@]}" "$bin" serve --bind 127.0.0.1:0 --data-dir "$dir/data" >"$dir/out" 2>"$dir/err" &
  pid=$!
  for _ in $(seq 1 600); do
    addr=$(grep -o 'coedit listening on [0-9.:]*' "$dir/out" | awk '{print $4}' || true)
    [ -n "$addr" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$dir/err" >&2; echo "FATAL: $label exited at startup" >&2; exit 1; }
    sleep 0.1
  done
  echo "FATAL: $label did not start within 60 s" >&2
  exit 1
}

stop() {
  kill -TERM "$pid"
  local status=0
  wait "$pid" || status=$?
  [ "$status" -eq 0 ] || { cat "$dir/err" >&2; echo "FATAL: $label exited with $status after SIGTERM" >&2; exit 1; }
}

start
curl -fsS --max-time 20 "http://$addr/healthz" | grep -q '"status":"ok"'
curl -fsS --max-time 20 -X POST -H 'Content-Type: application/json' \
  -d '{"base_rev":0,"op":["smoke test 你好 😀"]}' "http://$addr/api/docs/smoke/ops" | grep -q '"rev":1'
curl -fsS --max-time 20 "http://$addr/api/docs/smoke" | grep -q '"text":"smoke test 你好 😀"'
stop
start
curl -fsS --max-time 20 "http://$addr/api/docs/smoke" | grep -q '"rev":1'
stop
echo "smoke ok: $label"
