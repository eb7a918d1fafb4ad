"""Admin paths and the browser, and connections that never finish their headers, through
the real CLI (issue 28: any web page the operator visited could post to /-/reload and
/api/v1/deadletter/retry; a DNS name pointed at 127.0.0.1 read /api/v1/groups; /metrics
stayed open with --auth admin; a half-sent header held a connection for 70 s and more)."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest

from tests.conftest import FAST_RULES, write_rules
from tests.support.net import free_port, wait_port


async def _serve(tmp_path, fake_pd, proxy_process, *extra: str, env=None, name="proxy") -> str:
    port = free_port()
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(write_rules(tmp_path / "r", FAST_RULES)),
                  "--upstream", fake_pd.url, *extra, env=env, name=name)
    await asyncio.to_thread(wait_port, port)
    return f"http://127.0.0.1:{port}"


async def _status(method: str, url: str, **headers: str) -> int:
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers) as r:
        await r.read()
        return r.status


CROSS_SITE = [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
              {"Sec-Fetch-Site": "same-site"}, {"Origin": "null"}]


async def test_other_sites_cannot_change_anything_or_read_through_dns_rebinding(tmp_path, fake_pd,
                                                                                proxy_process):
    base = await _serve(tmp_path, fake_pd, proxy_process, "--external-host", "alerts.example.com")
    port = base.rsplit(":", 1)[1]
    for path in ("/-/reload", "/api/v1/deadletter/retry"):
        for headers in CROSS_SITE:
            assert await _status("POST", base + path, **headers) == 403, (path, headers)
        assert await _status("POST", base + path) == 200  # curl, the CLI: no browser headers
        assert await _status("POST", base + path, Origin=base, **{"Sec-Fetch-Site": "same-origin"}) == 200
    # a name the proxy does not answer to: DNS rebinding from the operator's browser
    for host in (f"evil.example:{port}", "attacker.test", f"127.0.0.1.nip.io:{port}"):
        assert await _status("GET", base + "/api/v1/groups", Host=host) == 403, host
        assert await _status("GET", base + "/", Host=host) == 403, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "alerts.example.com", f"[::1]:{port}"):
        assert await _status("GET", base + "/api/v1/groups", Host=host) == 200, host
    async with aiohttp.ClientSession() as s, s.get(base + "/api/v1/groups",
                                                   headers={"Host": "evil.example"}) as r:
        assert "--external-host" in (await r.json())["message"]
    assert await _status("POST", base + "/v1/alertmanager", Host="evil.example") in (400, 415)  # senders: any Host


async def test_console_form_bodies_that_are_not_a_form_are_4xx(tmp_path, fake_pd, proxy_process):
    base = await _serve(tmp_path, fake_pd, proxy_process)
    async with aiohttp.ClientSession() as s:
        form = aiohttp.FormData()
        form.add_field("csrf", "x")
        form.add_field("file", b"\xff\xfe", filename="a.bin")
        async with s.post(base + "/outbox/retry", data=form) as r:
            assert r.status == 415
        async with s.post(base + "/outbox/retry", data=b"csrf=\xff\xfe&seq=1",
                          headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 400 and "UTF-8" in (await r.json())["message"]
        async with s.post(base + "/outbox/retry", data=b"csrf=%ff%fe",
                          headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 400
        async with s.post(base + "/outbox/retry", data=b"x" * 70_000,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 413


async def test_metrics_need_the_admin_credentials_when_they_are_set(tmp_path, fake_pd, proxy_process):
    env = {"ADMIN_TOKEN": "s3cret-admin"}
    base = await _serve(tmp_path, fake_pd, proxy_process, "--auth", "admin=bearer:${ADMIN_TOKEN}", env=env)
    assert await _status("GET", base + "/metrics") == 401
    assert await _status("GET", base + "/metrics", Authorization="Bearer s3cret-admin") == 200
    (tmp_path / "r2").mkdir()
    open_ = await _serve(tmp_path, fake_pd, proxy_process, "--auth", "admin=bearer:${ADMIN_TOKEN}",
                         "--metrics-open", env=env, name="open")
    assert await _status("GET", open_ + "/metrics") == 200
    assert await _status("GET", open_ + "/api/v1/groups") == 401
    plain = await _serve(tmp_path, fake_pd, proxy_process, name="plain")
    assert await _status("GET", plain + "/metrics") == 200  # no admin credentials: open as before


@pytest.mark.parametrize("first", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"])
async def test_a_header_that_never_ends_is_cut_off_at_the_body_timeout(tmp_path, fake_pd,
                                                                       proxy_process, first):
    base = await _serve(tmp_path, fake_pd, proxy_process, "--body-timeout", "2")
    port = int(base.rsplit(":", 1)[1])

    def hold() -> float:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            if first:  # a keep-alive connection that answered a request first
                sock.sendall(first)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            t0 = time.monotonic()
            sock.sendall(b"POST /v1/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: app")
            sock.settimeout(0.5)
            while time.monotonic() - t0 < 30:  # a byte now and then; the proxy ends it anyway
                try:
                    sock.sendall(b"l")
                    if sock.recv(65536) == b"":
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
            return time.monotonic() - t0

    took = await asyncio.to_thread(hold)
    assert took < 2 + 1.5, took
