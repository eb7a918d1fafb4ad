"""The baseline: a bare aiohttp handler that parses the body with orjson and answers 200."""

from __future__ import annotations

import sys

import orjson
from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    orjson.loads(await request.read())
    return web.Response(body=b'{"status":"success"}', content_type="application/json")


def main() -> None:
    app = web.Application(client_max_size=512_000)
    app.router.add_post("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
