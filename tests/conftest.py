from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.app import Proxy, Settings
from proxy.store.memory import MemoryStore
from tests.support.fakepd import FakePagerDuty
from tests.support.net import free_port
from tests.support.redis_server import RedisCluster, RedisSentinel, RedisServer, RedisTLS

ROOT = Path(__file__).resolve().parent.parent
KEY = "0123456789abcdef0123456789abcdef"
KEY2 = "fedcba9876543210fedcba9876543210"
FIXTURES = ROOT / "tests" / "fixtures" / "alertmanager-0.25.0"  # captured from a real Alertmanager


@pytest.fixture(autouse=True)
def _routing_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_ROUTING_KEY", KEY)


def write_rules(dirpath: Path, text: str) -> Path:
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / "rules.yml").write_text(text)
    return dirpath


FAST_RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname]
  group_wait: 300ms
  group_interval: 500ms
  repeat_interval: 1h
"""


@pytest.fixture
async def fake_pd() -> AsyncIterator[FakePagerDuty]:
    pd = FakePagerDuty()
    await pd.start()
    yield pd
    await pd.stop()


@pytest.fixture
def make_proxy(aiohttp_client: Any, tmp_path: Path) -> Callable[..., Any]:
    """An in-process proxy served over loopback HTTP: make_proxy(upstream, rules=..., **settings)."""

    async def make(upstream: str, rules: str = FAST_RULES, store: Any = None, **kw: Any) -> Any:
        rules_dir = write_rules(tmp_path / "rules", rules)
        settings = Settings(rules=[str(rules_dir)], upstream=upstream, watch_interval=0,
                            retry_base=0.05, **kw)
        proxy = Proxy(settings, store or MemoryStore())
        client = await aiohttp_client(proxy.app())
        client.proxy = proxy
        return client

    return make


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


class ProxyProcess:
    """`alert-proxy serve` as a user runs it, in a subprocess."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", *self.args],
                                     env=self.env, stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT, cwd=ROOT)

    def stop(self, sig: int = 15) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def proxy_process(tmp_path: Path) -> Iterator[Callable[..., ProxyProcess]]:
    made: list[ProxyProcess] = []

    def make(*args: str, env: dict[str, str] | None = None, name: str = "proxy") -> ProxyProcess:
        # without --store, serve keeps its state in --state-dir: the test's own folder
        e = {**os.environ, "PD_ROUTING_KEY": KEY, "ALERT_PROXY_STATE_DIR": str(tmp_path / "data"),
             **(env or {})}
        p = ProxyProcess(list(args), e, tmp_path / f"{name}.log")
        p.start()
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()



@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests isolate themselves with key prefixes."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and start."""
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTLS]:
    server = RedisTLS(tmp_path_factory.mktemp("redis-tls"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_sentinel_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    s = RedisSentinel(tmp_path_factory.mktemp("redis-sentinel"))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def redis_cluster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    c = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    c.start()
    yield c
    c.stop()
