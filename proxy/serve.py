"""`alert-proxy serve`: the proxy's process. Its settings come from the command line
(cli.py reads them, with serve's environment variables); this runs the listeners, the
signals and the shutdown budget."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import ssl
import time
from typing import Any

from proxy import flags
from proxy.errors import ConfigError
from proxy.shutdown import Budget

__all__ = ["serve"]

log = logging.getLogger("alert_proxy")


class Cert:
    """A TLS context whose certificate is loaded again when its files change."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = cert, key
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._stamp = self._mtimes()
        try:
            self.ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError([f"--tls-cert/--tls-key: {e}"]) from None

    def _mtimes(self) -> tuple[float, float]:
        try:
            return os.stat(self.cert).st_mtime, os.stat(self.key).st_mtime
        except OSError:
            return 0.0, 0.0

    async def watch(self, every: float = 5.0) -> None:
        import logging

        log = logging.getLogger("alert_proxy")
        while True:
            await asyncio.sleep(every)
            stamp = self._mtimes()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.ctx.load_cert_chain(self.cert, self.key)  # new connections get it
                    log.info("TLS certificate reloaded", extra={"fields": {"cert": self.cert}})
                except (OSError, ssl.SSLError) as e:
                    log.error("TLS certificate reload failed; keeping the old one",
                              extra={"fields": {"cert": self.cert, "error": str(e)}})


def serve(args: Any, links: Any, api_token: Any) -> int:
    """Run the proxy until SIGTERM or SIGINT; `links` and `api_token` are cli.py's readers of
    the store, rules, webhook secrets and the REST token."""
    from aiohttp import web

    from proxy.app import Proxy, Settings
    from proxy.auth import parse_auth
    from proxy.logs import setup_logging
    from proxy.pdlink import RestSettings
    from proxy.sender import window_for
    from proxy.store import from_url

    setup_logging(args.log_level)
    store_url, rules, secrets = links(args)
    if store_url.startswith("sqlite://"):
        from proxy.store.sqlite import check_file

        check_file(store_url)  # a file that cannot be opened never will be: exit now
    auth = args.auth if args.auth is not None else (flags.env("auth", "") or "").split()
    budget = Budget(args.shutdown_timeout)  # SIGTERM to exit (proxy/shutdown.py)
    rest = RestSettings(token=api_token(args),
                        from_email=args.pagerduty_from or "", url=args.pagerduty_api_url,
                        sync_interval=args.pagerduty_sync_interval)
    settings = Settings(rules=rules, upstream=args.upstream, dry_run=args.dry_run,
                        pagerduty_secrets=secrets, rest=rest,
                        auth=parse_auth(auth), send_timeout=args.send_timeout,
                        window=window_for(args.rate_limit), body_timeout=args.body_timeout,
                        max_groups=args.max_groups, shutdown=budget,
                        metrics_open=args.metrics_open,
                        hosts=[h for h, _ in filter(None, (args.listen, args.listen_tls))] + (
                            args.external_host or (flags.env("external_host", "") or "").split()))
    cert = None
    if args.tls_cert or args.tls_key or args.listen_tls:
        if not (args.tls_cert and args.tls_key):
            raise ConfigError(["--tls-cert and --tls-key go together (and --listen-tls needs them)"])
        cert = Cert(args.tls_cert, args.tls_key)
    # --listen is http; with --listen-tls, https listens there too. --tls-cert alone (the
    # first version's way) makes --listen https.
    listeners = [(args.listen, cert if cert and not args.listen_tls else None)]
    if args.listen_tls:
        listeners.append((args.listen_tls, cert))

    # No uvloop: measured in bench/HISTORY.md, it adds no throughput here and its
    # p99 on 64-alert webhooks was 5x the default loop's.
    async def run() -> None:
        proxy = Proxy(settings, from_url(store_url, prefix=args.store_prefix))
        runner = web.AppRunner(proxy.app(), access_log=None, handle_signals=False,
                               shutdown_timeout=budget.grace)
        await runner.setup()
        urls = []
        for (host, port), tls in listeners:
            site = web.TCPSite(runner, host, port, ssl_context=tls.ctx if tls else None, backlog=1024,
                               shutdown_timeout=budget.grace)
            try:
                await site.start()
            except OSError as e:
                await runner.cleanup()
                raise ConfigError([f"--listen {host}:{port}: {e.strerror or e} (is another process "
                                   "listening there?)"]) from None
            urls.append(f"{'https' if tls else 'http'}://{host}:{port}")
        watcher = asyncio.create_task(cert.watch()) if cert else None
        gc.collect()
        gc.freeze()  # start-up objects never need scanning again
        # The store's objects live long and are many (100,000 open groups: ~300,000). With
        # CPython's defaults (700, 10, 10) a full pass over them ran 27 times while 100,000
        # groups opened and flushed, ~100 ms each (the loop stalled, flushing ran at 17k
        # groups/s); with these, young passes stay under ~11 ms and full ones are rare
        # (bench/HISTORY.md, "Scale").
        gc.set_threshold(5000, 10, 100)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, proxy.reload)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("alert-proxy listening", extra={"fields": {
            "urls": urls, "store": store_url.split("@")[-1].split("?")[0], "rules": rules,
            "dry_run": args.dry_run}})
        await stop.wait()
        t0 = time.monotonic()
        if watcher:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        try:
            await asyncio.wait_for(runner.cleanup(), timeout=max(0.1, budget.cutoff - (time.monotonic() - t0)))
        except TimeoutError:
            # What is still under way is cut off here, as systemd or Kubernetes would a moment
            # later; the durable stores hold everything, and their leases end.
            log.warning("shutdown timed out; exiting anyway", extra={"fields": {
                "seconds": round(time.monotonic() - t0, 2)}})
            logging.getLogger("alert_proxy").handlers[0].flush()
            os._exit(0)
        log.info("alert-proxy stopped", extra={"fields": {"seconds": round(time.monotonic() - t0, 2)}})

    asyncio.run(run())
    for handler in logging.getLogger("alert_proxy").handlers:
        handler.flush()  # the last lines (in the loop they were flushed at its next turn)
    return 0
