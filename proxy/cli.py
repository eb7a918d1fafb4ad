"""The command line: serve (proxy/serve.py runs it), doctor, sync, check, test, report,
import, deadletter. Every flag of `serve` also reads ALERT_PROXY_<FLAG> from the
environment; a bad value names both."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from proxy import flags
from proxy.durations import parse_duration
from proxy.errors import ConfigError, UsageError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from proxy import __version__

    p = flags.Parser(prog="alert-proxy", description="Alert-correlation proxy in "
                                "front of the PagerDuty Events API v2.")
    p.add_argument("--version", action="version", version=f"alert-proxy {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=flags.Parser)
    for name, what in (("serve", "run the proxy"),
                       ("sync", "have the proxy these flags describe (at --listen) read the "
                        "incidents it believes open back from PagerDuty's REST API now, and "
                        "print what it corrected (serve's flags; its admin --auth is used)"),
                       ("doctor", "check the links serve would use (rules, routing keys, store, "
                        "PagerDuty, its REST API token) and say what is wrong, a line each; exit "
                        "1 on any failure (the flags and environment of serve; nothing is sent)")):
        _serve_flags(sub.add_parser(name, help=what, formatter_class=flags.Help))
        if name == "sync":
            sub.choices[name].add_argument("--url", default=None, help="ask the proxy at this "
                                           "base URL instead of the one --listen gives")
    c = sub.add_parser("check", help="validate rule files; file:line errors; exit 1 on error")
    c.add_argument("rules", nargs="+")
    c.add_argument("--placeholders", action="store_true",
                   help="check without the real secrets: an unset ${VAR} gets a placeholder value")
    i = sub.add_parser("import", help="print an Alertmanager configuration as a rules file "
                       "(what cannot be expressed is listed on stderr and in comments)")
    i.add_argument("file", help="alertmanager.yml")
    t = sub.add_parser("test", help="run rule unit tests")
    t.add_argument("files", nargs="+")
    r = sub.add_parser("report", help="the noise report: alerts in, pages out, suppressed, per "
                       "rule and service", formatter_class=flags.Help)
    r.add_argument("--since", default="7d", help="how far back (1h to 14d)")
    r.add_argument("--json", action="store_true", help="the figures as JSON")
    r.add_argument("--store", default=flags.env("store"),
                   help="read this store (sqlite://, redis://...) (ALERT_PROXY_STORE)")
    r.add_argument("--store-prefix", default=flags.env("store_prefix", "alert-proxy"))
    r.add_argument("--url", default=None, help="or ask a running proxy (e.g. http://127.0.0.1:8080)")
    r.add_argument("--token", default=flags.env("admin_token"), help="admin bearer token (ALERT_PROXY_ADMIN_TOKEN)")
    d = sub.add_parser("deadletter", help="list or re-send dead-lettered events of a running proxy",
                       formatter_class=flags.Help)
    d.add_argument("action", choices=["list", "retry"])
    d.add_argument("--url", default=flags.env("url", "http://127.0.0.1:8080"),
                   help="the proxy's base URL (ALERT_PROXY_URL)")
    d.add_argument("--seq", default=None, help="comma-separated event numbers (retry; default all)")
    d.add_argument("--token", default=flags.env("admin_token"), help="admin bearer token (ALERT_PROXY_ADMIN_TOKEN)")
    return p


def _serve_flags(s: argparse.ArgumentParser) -> None:
    """The flags of serve (and of sync and doctor, which check what serve would run)."""
    flags.option(s, "listen", "127.0.0.1:8080", "HOST:PORT for http", "HOST:PORT", flags.hostport)
    flags.option(s, "listen-tls", None, "HOST:PORT for https beside --listen (needs --tls-cert/--tls-key)",
            "HOST:PORT", flags.hostport)
    s.add_argument("--rules", action="append", default=None,
                   help="rule file or folder, repeatable (ALERT_PROXY_RULES, comma-separated; "
                   "default rules/)")
    flags.option(s, "store", None, "memory://, sqlite:///path/state.db, redis://host:port/db, "
            "rediss://..., redis+sentinel://h:p,h:p/service/db, redis+cluster://h:p,h:p "
            "(default: sqlite in --state-dir)")
    flags.option(s, "state-dir", "data", "where the default store keeps its file (state.db), as "
            "Alertmanager's --storage.path")
    flags.option(s, "store-prefix", "alert-proxy", "Redis key prefix")
    flags.option(s, "upstream", "https://events.pagerduty.com",
            "PagerDuty base URL; events go to <upstream>/v2/enqueue",
            "an http(s) URL with a host (e.g. https://events.pagerduty.com)", flags.base_url)
    flags.option(s, "tls-cert", None, "PEM certificate (reloaded when the file changes)")
    flags.option(s, "tls-key", None, "PEM key")
    s.add_argument("--auth", action="append", default=None,
                   help="SOURCE=bearer:TOKEN or SOURCE=basic:USER:PASS; ${VAR} is read from the "
                   "environment; repeatable (ALERT_PROXY_AUTH, space-separated)")
    flags.option(s, "rate-limit", "120", "events per routing key in any 60 s", "a whole number of at least 2",
            flags.positive(int, least=1))
    flags.option(s, "send-timeout", "10", "seconds to wait for PagerDuty's answer", "a number of seconds",
            flags.positive(float))
    flags.option(s, "body-timeout", "10", "seconds a request's body may take to arrive (408 after)",
            "a number of seconds", flags.positive(float))
    flags.option(s, "max-groups", "1000000", "open groups at most; an alert that would open one more is "
            "answered 503 (its sender retries)", "a whole number", flags.positive(int))
    s.add_argument("--pagerduty-webhook-secret", action="append", default=None, metavar="SECRET",
                   help="a PagerDuty webhook subscription's signing secret, repeatable while one is "
                   "rotated; ${VAR} is read from the environment "
                   "(ALERT_PROXY_PAGERDUTY_WEBHOOK_SECRET, space-separated)")
    s.add_argument("--external-host", action="append", default=None, metavar="HOST",
                   help="a name users reach the proxy by (a DNS name, a reverse proxy's); admin "
                   "paths answer only to an IP address, localhost, the --listen hosts and these, "
                   "repeatable (ALERT_PROXY_EXTERNAL_HOST, space-separated)")
    s.add_argument("--metrics-open", action="store_true", default=flags.env_bool("metrics_open"),
                   help="serve /metrics without the admin credentials that --auth admin=... "
                   "otherwise asks for (ALERT_PROXY_METRICS_OPEN)")
    flags.option(s, "shutdown-timeout", "10", "seconds from SIGTERM to exit, whatever the backlog",
            "a number of seconds", flags.positive(float))
    s.add_argument("--dry-run", action="store_true", default=flags.env_bool("dry_run"),
                   help="print the events that would be sent instead of sending (ALERT_PROXY_DRY_RUN)")
    flags.option(s, "log-level", "info", "debug, info, warning or error", "a log level", flags.log_level)
    # (no default here: --help shows defaults, and this one is a secret)
    s.add_argument("--pagerduty-api-token", default=None, metavar="TOKEN", help="a PagerDuty REST "
                   "API token (account or user key): turns on the sync of incident states and "
                   "incident notes; ${VAR} is read from the environment "
                   "(ALERT_PROXY_PAGERDUTY_API_TOKEN, or PD_API_TOKEN)")
    flags.option(s, "pagerduty-from", None, "the email of the PagerDuty user notes are written as "
                 "(REST API's From header)", "an email address", flags.email)
    flags.option(s, "pagerduty-api-url", "https://api.pagerduty.com", "PagerDuty's REST API base URL",
                 "an http(s) URL with a host", flags.base_url)
    flags.option(s, "pagerduty-sync-interval", "5m", "how often the incidents believed open are read "
                 "back from PagerDuty's REST API (with a token)", "a duration like 5m or 30s",
                 flags.positive(parse_duration))


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except ConfigError as e:  # an environment variable the defaults read
        for line in e.errors:
            print(f"alert-proxy: {line}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            from proxy.serve import serve

            return serve(args, _links, _api_token)
        if args.command == "check":
            return _check(args.rules, args.placeholders)
        if args.command == "test":
            from proxy.ruletest import run_files

            return run_files(args.files)
        if args.command == "report":
            return _report(args)
        if args.command == "import":
            return _import(args.file)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "sync":
            return _sync(args)
        return _deadletter(args)
    except UsageError as e:
        for line in e.errors:
            print(f"alert-proxy: {line}", file=sys.stderr)
        return 2
    except ConfigError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        return 1


def _check(locations: list[str], placeholders: bool) -> int:
    from proxy.rules import RuleSet, load_rules
    from proxy.rules.schema import rule_files

    for loc in locations:
        if not os.path.exists(loc):
            raise ConfigError([f"{loc}:0: no such file or folder"])
    filled: set[str] = set()
    rf = load_rules(locations, placeholders=filled if placeholders else None)
    n = len(rule_files(locations))
    note = f" (placeholders for {', '.join(sorted(filled))})" if filled else ""
    extra = f", {len(rf.sources)} webhook source{'s' if len(rf.sources) != 1 else ''}" if rf.sources else ""
    count = sum(1 for _ in RuleSet(rf).walk())  # with those in routes:
    print(f"ok: {count} rules{extra} in {n} file{'s' if n != 1 else ''}{note}")
    return 0


def _import(path: str) -> int:
    """Print the rules for an Alertmanager configuration, checked as `check --placeholders`
    would check them; what they cannot express goes to stderr."""
    import tempfile
    from pathlib import Path

    from proxy.importer import import_alertmanager
    from proxy.rules import load_rules
    from proxy.rules.yamlfile import load_yaml

    text, notes = import_alertmanager(load_yaml(Path(path)), Path(path).name)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "imported.yml").write_text(text)
        try:
            load_rules([tmp], placeholders=set())
        except ConfigError as e:
            raise ConfigError(["import: the rules written do not load (a bug: please report it "
                               "with the configuration):", *e.errors]) from None
    sys.stdout.write(text)
    for note in notes:
        print(f"alert-proxy import: not imported: {note}", file=sys.stderr)
    return 0


def _report(args: Any) -> int:
    from proxy.report import format_report, from_api, from_store

    if args.url or not args.store or args.store.startswith("memory://"):
        figures = from_api(args.url or "http://127.0.0.1:8080", args.since, args.token)
    else:
        if args.store.startswith("sqlite://"):
            from proxy.store.sqlite import file_of

            if not file_of(args.store).is_file():  # (opening it would make an empty one)
                raise UsageError([f"--store {args.store}: no such file"])
        figures = from_store(args.store, args.store_prefix, args.since)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode() if args.json else format_report(figures))
    return 0


def _ask(args: Any, path: str, post: bool, timeout: float = 10, header: str | None = None) -> Any:
    """A running proxy's JSON answer to an admin call; None (said on stderr) when it could
    not be had."""
    headers = {"Authorization": header or f"Bearer {args.token}"} if header or args.token else {}
    req = urllib.request.Request(args.url.rstrip("/") + path, data=b"" if post else None,
                                 headers=headers, method="POST" if post else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            why = orjson.loads(e.read()).get("message") or e.reason
        except (orjson.JSONDecodeError, AttributeError):
            why = e.reason
        print(f"alert-proxy {args.command}: {args.url} answered {e.code}: {why}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as e:
        print(f"alert-proxy {args.command}: cannot reach {args.url}: {e}", file=sys.stderr)
    return None


def _sync(args: Any) -> int:
    """The sync runs inside the proxy (its store has one writer): ask it, as an admin."""
    from proxy.auth import parse_auth

    auth = args.auth if args.auth is not None else (flags.env("auth", "") or "").split()
    if args.url is None:
        host, port = args.listen
        tls = args.tls_cert and not args.listen_tls
        args.url = f"{'https' if tls else 'http'}://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    args.token = None
    data = _ask(args, "/api/v1/sync", post=True, timeout=300, header=parse_auth(auth).header("admin"))
    if data is None:
        return 1
    for c in data["changes"]:
        by = f" by {c['by']}" if c["by"] else ""
        print(f"{c['dedup_key']}: {c['was']} -> {c['now']}{by} (incident {c['incident']})")
    if not data["changes"]:
        print("no changes: every group's state matches PagerDuty's")
    return 0


def _doctor(args: Any) -> int:
    from proxy.doctor import Doctor

    store_url, rules, secrets = _links(args)
    doctor = Doctor(rules=rules, upstream=args.upstream, store_url=store_url, store_prefix=args.store_prefix,
                    token=_api_token(args),
                    from_email=args.pagerduty_from or "", api_url=args.pagerduty_api_url,
                    webhook_secrets=secrets)
    code = asyncio.run(doctor.run())
    print("\n".join(doctor.lines))
    print(f"{doctor.failed} problem(s) found" if doctor.failed else "all links ok")
    return code


def _api_token(args: Any) -> str:
    from proxy.auth import expand_env

    given = args.pagerduty_api_token or flags.env("pagerduty_api_token") or os.environ.get("PD_API_TOKEN")
    return expand_env(given or "", "--pagerduty-api-token")


def _links(args: Any) -> tuple[str, list[str], list[str]]:
    """serve's store URL, rule locations and webhook secrets (${VAR} read)."""
    from proxy.auth import expand_env

    store_url = args.store or f"sqlite://{Path(args.state_dir).resolve() / 'state.db'}"
    rules = args.rules or (flags.env("rules", "rules/") or "rules/").split(",")
    secrets = args.pagerduty_webhook_secret
    if secrets is None:
        secrets = (flags.env("pagerduty_webhook_secret", "") or "").split()
    return store_url, rules, [expand_env(x, "--pagerduty-webhook-secret") for x in secrets]


def _deadletter(args: Any) -> int:
    if args.action == "list":
        data = _ask(args, "/api/v1/outbox", post=False)
    else:
        data = _ask(args, "/api/v1/deadletter/retry" + (f"?seq={args.seq}" if args.seq else ""), post=True)
    if data is None:
        return 1
    if args.action == "retry":
        print(f"requeued {data['requeued']} event(s)")
        return 0
    dead, actions = data["dead"], data.get("dead_actions") or []
    if not dead and not actions:
        print("no dead letters")
    for item in dead:
        print(f"{item['seq']}\t{item['action']}\t{item['key']}\t{item['dedup_key']}\t"
              f"{item['last_error']}")
    for item in actions:  # actions on incident events (not re-sent by retry)
        print(f"action\t{item['action']}\t{item['event_type']}\t{item['incident']}\t"
              f"{item['tries']} tries\t{item['error']}")
    return 0
