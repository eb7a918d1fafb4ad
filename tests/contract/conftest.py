"""The stores the contract suite runs against, each a real one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from proxy.store import Store, from_url

STORES = ["memory", "sqlite", "redis", "redis_tls", "redis_sentinel", "redis_cluster"]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Store]:
    kind = request.param
    if kind == "memory":
        s = from_url("memory://")
    elif kind == "sqlite":
        s = from_url(f"sqlite://{tmp_path}/state.db")
    else:
        server = request.getfixturevalue(f"{kind}_server")
        s = from_url(server.url, prefix=f"t-{uuid.uuid4().hex[:8]}")
    yield s
    await s.close()
