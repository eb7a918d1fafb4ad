#!/usr/bin/env bash
# Install the proxy in .venv and run it: the embedded durable store (SQLite under .state/,
# so a restart forgets nothing), the example rules. ALERT_PROXY_STORE=memory:// for a
# throw-away run.
# Without PD_ROUTING_KEY it runs in dry-run mode and prints every event it would send
# to PagerDuty on standard output, so you can watch an alert storm become a few pages.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q && $sudo apt-get install -y -q python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q .
dry=()
if [ -z "${PD_ROUTING_KEY:-}" ]; then
  export PD_ROUTING_KEY=00000000000000000000000000000000 PD_DB_KEY=00000000000000000000000000000000
  dry=(--dry-run)
  echo "PD_ROUTING_KEY is not set: dry run, events are printed instead of sent" >&2
fi
export PD_DB_KEY="${PD_DB_KEY:-$PD_ROUTING_KEY}"
exec .venv/bin/alert-proxy serve --listen "${ALERT_PROXY_LISTEN:-127.0.0.1:8080}" \
  --rules rules/ --store "${ALERT_PROXY_STORE:-sqlite://.state/state.db}" "${dry[@]}" "$@"
