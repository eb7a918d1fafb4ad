"""The command line: serve, check, test, deadletter. Every flag also reads ALERT_PROXY_*."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import orjson

from proxy.errors import ConfigError

__all__ = ["main"]


def _env(flag: str, default: str | None = None) -> str | None:
    return os.environ.get("ALERT_PROXY_" + flag.upper().replace("-", "_"), default)


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alert-proxy", description="Alert-correlation proxy in "
                                "front of the PagerDuty Events API v2.")
    from proxy import __version__

    p.add_argument("--version", action="version", version=f"alert-proxy {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the proxy")
    s.add_argument("--listen", type=_listen, default=_env("listen", "127.0.0.1:8080"),
                   help="HOST:PORT (ALERT_PROXY_LISTEN)")
    s.add_argument("--rules", action="append", default=None,
                   help="rule file or folder, repeatable (ALERT_PROXY_RULES, comma-separated)")
    s.add_argument("--store", default=_env("store", "memory://"),
                   help="memory:// or redis://host:port/db (ALERT_PROXY_STORE)")
    s.add_argument("--store-prefix", default=_env("store_prefix", "alert-proxy"),
                   help="Redis key prefix (ALERT_PROXY_STORE_PREFIX)")
    s.add_argument("--upstream", default=_env("upstream", "https://events.pagerduty.com"),
                   help="PagerDuty base URL; events go to <upstream>/v2/enqueue (ALERT_PROXY_UPSTREAM)")
    s.add_argument("--tls-cert", default=_env("tls_cert"), help="PEM certificate (ALERT_PROXY_TLS_CERT)")
    s.add_argument("--tls-key", default=_env("tls_key"), help="PEM key (ALERT_PROXY_TLS_KEY)")
    s.add_argument("--auth", action="append", default=None,
                   help="SOURCE=bearer:TOKEN or SOURCE=basic:USER:PASS; ${VAR} is read from the "
                   "environment; repeatable (ALERT_PROXY_AUTH, space-separated)")
    s.add_argument("--rate-limit", type=int, default=int(_env("rate_limit", "120") or 120),
                   help="events per routing key per 60 s (ALERT_PROXY_RATE_LIMIT)")
    s.add_argument("--send-timeout", type=float, default=float(_env("send_timeout", "10") or 10),
                   help="seconds to wait for PagerDuty's answer (ALERT_PROXY_SEND_TIMEOUT)")
    s.add_argument("--pagerduty-webhook-secret", action="append", default=None, metavar="SECRET",
                   help="a PagerDuty webhook subscription's signing secret, repeatable while one is "
                   "rotated; ${VAR} is read from the environment "
                   "(ALERT_PROXY_PAGERDUTY_WEBHOOK_SECRET, space-separated)")
    s.add_argument("--shutdown-timeout", type=float,
                   default=float(_env("shutdown_timeout", "10") or 10),
                   help="seconds from SIGTERM to exit, whatever the backlog (ALERT_PROXY_SHUTDOWN_TIMEOUT)")
    s.add_argument("--dry-run", action="store_true",
                   default=(_env("dry_run", "") or "").lower() in ("1", "true", "yes"),
                   help="print the events that would be sent instead of sending (ALERT_PROXY_DRY_RUN)")
    s.add_argument("--log-level", default=_env("log_level", "info"), help="(ALERT_PROXY_LOG_LEVEL)")
    c = sub.add_parser("check", help="validate rule files; file:line errors; exit 1 on error")
    c.add_argument("rules", nargs="+")
    t = sub.add_parser("test", help="run rule unit tests")
    t.add_argument("files", nargs="+")
    r = sub.add_parser("report", help="the noise report: alerts in, pages out, suppressed, per "
                       "rule and service")
    r.add_argument("--since", default="7d", help="how far back (1h to 14d; default 7d)")
    r.add_argument("--json", action="store_true", help="the figures as JSON")
    r.add_argument("--store", default=_env("store"),
                   help="read this store (sqlite://, redis://...) (ALERT_PROXY_STORE)")
    r.add_argument("--store-prefix", default=_env("store_prefix", "alert-proxy"))
    r.add_argument("--url", default=None, help="or ask a running proxy (e.g. http://127.0.0.1:8080)")
    r.add_argument("--token", default=_env("admin_token"), help="admin bearer token (ALERT_PROXY_ADMIN_TOKEN)")
    d = sub.add_parser("deadletter", help="list or re-send dead-lettered events of a running proxy")
    d.add_argument("action", choices=["list", "retry"])
    d.add_argument("--url", default=_env("url", "http://127.0.0.1:8080"),
                   help="the proxy's base URL (ALERT_PROXY_URL)")
    d.add_argument("--seq", default=None, help="comma-separated event numbers (retry; default all)")
    d.add_argument("--token", default=_env("admin_token"), help="admin bearer token (ALERT_PROXY_ADMIN_TOKEN)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check":
            return _check(args.rules)
        if args.command == "test":
            from proxy.ruletest import run_files

            return run_files(args.files)
        if args.command == "report":
            return _report(args)
        return _deadletter(args)
    except ConfigError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        return 1


def _check(locations: list[str]) -> int:
    from proxy.rules import load_rules
    from proxy.rules.schema import rule_files

    for loc in locations:
        if not os.path.exists(loc):
            raise ConfigError([f"{loc}:0: no such file or folder"])
    rf = load_rules(locations)
    n = len(rule_files(locations))
    print(f"ok: {len(rf.rules)} rules in {n} file{'s' if n != 1 else ''}")
    return 0


def _report(args: Any) -> int:
    from proxy.report import format_report, from_api, from_store

    if args.url or not args.store or args.store.startswith("memory://"):
        figures = from_api(args.url or "http://127.0.0.1:8080", args.since, args.token)
    else:
        figures = from_store(args.store, args.store_prefix, args.since)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode() if args.json else format_report(figures))
    return 0


def _deadletter(args: Any) -> int:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    if args.action == "list":
        req = urllib.request.Request(args.url.rstrip("/") + "/api/v1/outbox", headers=headers)
    else:
        q = f"?seq={args.seq}" if args.seq else ""
        req = urllib.request.Request(args.url.rstrip("/") + "/api/v1/deadletter/retry" + q,
                                     data=b"", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            data = orjson.loads(resp.read())
    except (urllib.error.URLError, OSError) as e:
        print(f"alert-proxy deadletter: cannot reach {args.url}: {e}", file=sys.stderr)
        return 1
    if args.action == "retry":
        print(f"requeued {data['requeued']} event(s)")
        return 0
    dead = data["dead"]
    if not dead:
        print("no dead letters")
    for item in dead:
        print(f"{item['seq']}\t{item['action']}\t{item['key']}\t{item['dedup_key']}\t"
              f"{item['last_error']}")
    return 0


def _serve(args: Any) -> int:
    from aiohttp import web

    from proxy.app import Proxy, Settings
    from proxy.auth import expand_env, parse_auth
    from proxy.logs import setup_logging
    from proxy.sender import window_for
    from proxy.store import from_url

    setup_logging(args.log_level)
    rules = args.rules or (_env("rules", "rules/") or "rules/").split(",")
    auth = args.auth if args.auth is not None else (_env("auth", "") or "").split()
    if args.rate_limit < 2:
        raise ConfigError(["--rate-limit: must be at least 2 events per 60 s"])
    grace = min(2.0, args.shutdown_timeout / 4)  # for requests in progress; the rest for the outbox
    secrets = args.pagerduty_webhook_secret
    if secrets is None:
        secrets = (_env("pagerduty_webhook_secret", "") or "").split()
    settings = Settings(rules=rules, upstream=args.upstream, dry_run=args.dry_run,
                        pagerduty_secrets=[expand_env(x, "--pagerduty-webhook-secret") for x in secrets],
                        auth=parse_auth(auth), send_timeout=args.send_timeout,
                        window=window_for(args.rate_limit),
                        shutdown_timeout=args.shutdown_timeout - grace)
    ssl_ctx = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise ConfigError(["--tls-cert and --tls-key go together"])
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError([f"--tls-cert/--tls-key: {e}"]) from None
    # No uvloop: measured in bench/RESULTS.md, it adds no throughput here and its
    # p99 on 64-alert webhooks was 5x the default loop's.
    async def run() -> None:
        proxy = Proxy(settings, from_url(args.store, prefix=args.store_prefix))
        runner = web.AppRunner(proxy.app(), access_log=None, handle_signals=False,
                               shutdown_timeout=grace)
        await runner.setup()
        host, port = args.listen
        site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx, backlog=1024,
                           shutdown_timeout=grace)
        await site.start()
        gc.collect()
        gc.freeze()  # start-up objects never need scanning again
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, proxy.reload)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        scheme = "https" if ssl_ctx else "http"
        print(orjson.dumps({"msg": "alert-proxy listening", "url": f"{scheme}://{host}:{port}",
                            "store": args.store.split("@")[-1], "rules": rules,
                            "dry_run": args.dry_run}).decode(), file=sys.stderr, flush=True)
        await stop.wait()
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(runner.cleanup(), timeout=args.shutdown_timeout + 1)
        except TimeoutError:
            print(orjson.dumps({"msg": "shutdown timed out; exiting anyway"}).decode(), file=sys.stderr)
        print(orjson.dumps({"msg": "alert-proxy stopped", "seconds": round(time.monotonic() - t0, 2)}
                           ).decode(), file=sys.stderr, flush=True)

    asyncio.run(run())
    return 0
