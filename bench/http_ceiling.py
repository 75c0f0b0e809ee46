"""The HTTP-stack ceiling: a bare aiohttp endpoint in its own process.

``python -m bench.http_ceiling [--port 0]`` serves ``POST /v1/batches``: it
reads the whole body (as the gateway does) and answers a small fixed JSON of
the gateway answer's size, with no authentication, no cryptography and no
store. Served with the same aiohttp runner settings as ``sanaq-gateway``, it is
what the HTTP stack alone costs on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import signal
import sys

from aiohttp import web

__all__ = ["make_app", "main"]

_ANSWER = {
    "receipt": base64.b64encode(bytes(300)).decode("ascii"),
    "duplicate": False,
    "batch_hash": "00" * 32,
    "device_id": "BT-00000",
    "seq": 1,
    "received_at_ms": 0,
    "road": "online",
}


async def _post(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(_ANSWER | {"seq": len(body)})


def make_app() -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/v1/batches", _post)
    return app


async def _serve(port: int) -> None:
    runner = web.AppRunner(make_app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=2048, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host, bound = runner.addresses[0][:2]
    print(f"http-ceiling: listening http on {host}:{bound}", file=sys.stderr, flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.http_ceiling")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    asyncio.run(_serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
