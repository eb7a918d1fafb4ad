"""Every Redis URL form gets connections that pack commands in C (hiredis), with the same
bytes as redis-py's own packer; nothing connects here (the stores' contract suite runs
the real servers)."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection

from proxy.store.redis_url import _CPacked, connect

URLS = ["redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6379/0?ssl_ca_certs=/ca.pem",
        "unix:///run/redis.sock?db=0", "redis+sentinel://127.0.0.1:26379/mymaster/0",
        "rediss+sentinel://127.0.0.1:26379/mymaster/0"]


@pytest.mark.parametrize("url", URLS)
def test_every_url_form_packs_commands_in_c(url):
    cls = connect(url).connection_pool.connection_class
    assert issubclass(cls, _CPacked), cls.__mro__
    assert cls.__name__ == cls.__mro__[2].__name__  # the scheme's own class underneath


@pytest.mark.parametrize("args", [
    ("EVALSHA", "ab" * 20, 2, "k1", b"k2", 1.5, 1700000005.123456789, 10, -3, 0.1, "é", b"\x00\xff"),
    ("SCRIPT LOAD", "return 1"),  # a two-word command name
    ("PING",),
])
def test_packed_bytes_are_redis_pys(args):
    assert b"".join(_CPacked().pack_command(*args)) == b"".join(Connection().pack_command(*args))
