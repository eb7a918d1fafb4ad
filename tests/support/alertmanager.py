"""The real Alertmanager (Debian's prometheus-alertmanager) on loopback, for the tests."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.support.net import free_port


async def wait_http(url: str, timeout: float = 20.0) -> None:
    """Until `url` answers 200."""
    async with aiohttp.ClientSession() as s:
        for _ in range(int(timeout / 0.1)):
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


@asynccontextmanager
async def alertmanager(workdir: Path, config: str) -> AsyncIterator[str]:
    """Alertmanager running `config` (its files in `workdir`); yields its base URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "am.yml").write_text(config)
    port = free_port()
    am = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        ["prometheus-alertmanager", f"--config.file={workdir / 'am.yml'}",
         f"--storage.path={workdir / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address=", "--log.level=warn"],
        stdout=(workdir / "am.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        await wait_http(f"http://127.0.0.1:{port}/-/ready")
        yield f"http://127.0.0.1:{port}"
    finally:
        am.terminate()
        am.wait(10)
