#!/bin/bash
# The cluster figure of docs/PERFORMANCE.md ("Cluster mode: 3 nodes against 1").
# usage: loadtest/scripts/cluster.sh NODES LABEL loadtest-args...
# (after `cargo build --release -p coedit -p coedit-loadtest`, from the repository root)
# Starts 3 nats-servers on 127.0.0.1 (one JetStream cluster, R3, default sync), NODES coedit
# nodes in cluster mode, runs one load spread over the nodes (--url per node), prints the
# load summary and the CPU seconds of all coedit and all nats-server processes; stops every
# process it started. WSPATH=/hocuspocus (with `--kind yjs`) drives Yjs clients.
set -u
NODES=$1; LABEL=$2; shift 2
WSPATH=${WSPATH:-/ws}
BIN=${BIN:-target/release}
NATS=${COEDIT_NATS_SERVER:-$(.ci/nats-server.sh)}
D=$(mktemp -d /tmp/cbench.XXXX)
B=$((30000 + RANDOM % 20000))
ROUTES="nats://127.0.0.1:$((B+10)),nats://127.0.0.1:$((B+11)),nats://127.0.0.1:$((B+12))"
NP=()
for i in 0 1 2; do
  mkdir -p $D/n$i
  $NATS -js -a 127.0.0.1 -p $((B+i)) -m $((B+20+i)) -sd $D/n$i --name n$i --cluster_name cb --cluster nats://127.0.0.1:$((B+10+i)) --routes $ROUTES > $D/nats$i.log 2>&1 &
  NP+=($!)
done
# JetStream ready on all three (a meta leader elected): nats-server's /healthz answers 200.
for i in 0 1 2; do
  for k in $(seq 300); do curl -sf http://127.0.0.1:$((B+20+i))/healthz >/dev/null && break; sleep 0.1; done
done
URLS="\"nats://127.0.0.1:$B\", \"nats://127.0.0.1:$((B+1))\", \"nats://127.0.0.1:$((B+2))\""
CP=(); WS=()
for i in $(seq 0 $((NODES-1))); do
  printf '[storage]\nbackend = "jetstream"\n[cluster]\nnats = [%s]\nnode = "node-%s"\nreplicas = 3\n' "$URLS" $i > $D/c$i.toml
  PORT=$((B+100+i))
  for try in $(seq 30); do
    $BIN/coedit serve --bind 127.0.0.1:$PORT --config $D/c$i.toml --data-dir $D/d$i > $D/coedit$i.log 2>&1 &
    P=$!
    ok=0
    for k in $(seq 50); do curl -sf http://127.0.0.1:$PORT/readyz >/dev/null && { ok=1; break; }; kill -0 $P 2>/dev/null || break; sleep 0.1; done
    [[ $ok == 1 ]] && break
    kill $P 2>/dev/null; wait $P 2>/dev/null; sleep 1
  done
  CP+=($P); WS+=(--url ws://127.0.0.1:$PORT$WSPATH)
done
cpu() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
C0=$(cpu "${CP[@]}"); N0=$(cpu "${NP[@]}")
$BIN/coedit-loadtest run "${WS[@]}" "$@" > $D/load.out 2>&1
RC=$?
C1=$(cpu "${CP[@]}"); N1=$(cpu "${NP[@]}")
EDITS=$(grep -oE "[0-9]+ (ops|updates) acked" $D/load.out | head -1 | grep -oE "^[0-9]+")
echo "== $LABEL nodes=$NODES rc=$RC coedit_cpu_s=$(awk "BEGIN{print ($C1-$C0)/100}") nats_cpu_s=$(awk "BEGIN{print ($N1-$N0)/100}") edits=$EDITS"
grep -iE "acked|p50|p99|converged|errors|visible|offered" $D/load.out | head -20
for p in "${CP[@]}"; do kill $p; done; for p in "${CP[@]}"; do wait $p 2>/dev/null; done
for p in "${NP[@]}"; do kill $p; done; for p in "${NP[@]}"; do wait $p 2>/dev/null; done
[[ $RC == 0 ]] && rm -rf $D || echo "kept $D"
