#!/usr/bin/env bash
# Install the proxy in .venv and run it: the embedded durable store (SQLite under .state/,
# so a restart forgets nothing), the example rules.
#   ALERT_PROXY_LISTEN=0.0.0.0:9090   where it listens (default 127.0.0.1:8080)
#   ALERT_PROXY_STATE_DIR=/var/tmp/ap  where SQLite keeps its file (default .state)
#   ALERT_PROXY_STORE=memory://        a throw-away run (or redis://..., sqlite:///...)
# Without PD_ROUTING_KEY it runs in dry-run mode and prints every event it would send
# to PagerDuty on standard output, so you can watch an alert storm become a few pages.
# The install runs once; again only when pyproject.toml changes (the code itself is
# installed editable: a `git pull` needs no reinstall).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "quickstart: $*" >&2; }
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  say "installing python3-venv with apt"
  $sudo apt-get update -q && $sudo apt-get install -y -q python3-venv
fi
if [ ! -x .venv/bin/python ]; then
  say "making a virtual environment in .venv"
  python3 -m venv .venv
fi
stamp=.venv/.alert-proxy-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing alert-proxy and its dependencies into .venv (once; about half a minute)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install --progress-bar off -e . 2>&1 \
    | grep --line-buffered -E '^(Collecting|Successfully installed)' | sed -u 's/^/quickstart:   /' >&2 || true
  .venv/bin/python -c "import proxy" || { say "the install failed (see above)"; exit 1; }
  echo "$want" > "$stamp"
else
  say "already installed (pyproject.toml unchanged)"
fi
dry=()
if [ -z "${PD_ROUTING_KEY:-}" ]; then
  export PD_ROUTING_KEY=00000000000000000000000000000000 PD_DB_KEY=00000000000000000000000000000000
  dry=(--dry-run)
  say "PD_ROUTING_KEY is not set: dry run, events are printed instead of sent"
fi
export PD_DB_KEY="${PD_DB_KEY:-$PD_ROUTING_KEY}"
listen="${ALERT_PROXY_LISTEN:-127.0.0.1:8080}"
store=()
[ -n "${ALERT_PROXY_STORE:-}" ] && store=(--store "$ALERT_PROXY_STORE")
say "serving on http://$listen (state in ${ALERT_PROXY_STORE:-${ALERT_PROXY_STATE_DIR:-.state}/state.db}); Ctrl-C stops it"
exec .venv/bin/alert-proxy serve --listen "$listen" --rules rules/ \
  --state-dir "${ALERT_PROXY_STATE_DIR:-.state}" "${store[@]}" "${dry[@]}" "$@"
