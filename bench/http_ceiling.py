"""The HTTP-stack ceiling: a bare aiohttp endpoint in its own process, served as the gateway is served.

``python -m bench.http_ceiling [--config gateway.toml]`` serves ``POST
/v1/batches``: it reads the whole body (as the gateway does) and answers a
small fixed JSON of the gateway answer's size, with no authentication, no
cryptography and no store. With ``--config`` it takes from the gateway's own
configuration everything the gateway's listener uses: address, TLS
certificate and key (loaded by the same ``keys.tls.server_ssl_context``),
the ``web.AppRunner`` and ``web.TCPSite`` settings (``gateway.server.
runner_options`` / ``site_options``) and the body cap. So the only difference
from ``sanaq-gateway serve`` is the handler: what the HTTP and TLS stack
alone cost on this machine. Without ``--config``: plain HTTP on 127.0.0.1, an
ephemeral port, the gateway's default runner settings.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import signal
import sys
from pathlib import Path

from aiohttp import web

from gateway.config import GatewayConfig, ServerConfig, load_config
from gateway.server import runner_options, site_options
from keys import tls

__all__ = ["main", "make_app"]

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


def make_app(config: GatewayConfig | None = None) -> web.Application:
    limit = (config or GatewayConfig()).limits.max_body_bytes
    app = web.Application(client_max_size=limit)
    app.router.add_post("/v1/batches", _post)
    return app


async def _serve(config: GatewayConfig) -> None:
    ssl_context = None
    if not config.server.plain_http:
        if config.server.tls_cert is None or config.server.tls_key is None:
            raise SystemExit("bench.http_ceiling: server.tls_cert and server.tls_key are required for TLS")
        ssl_context = tls.server_ssl_context(config.server.tls_cert, config.server.tls_key)
    runner = web.AppRunner(make_app(config), **runner_options(config))
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port, ssl_context=ssl_context, **site_options())
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host, bound = runner.addresses[0][:2]
    scheme = "http" if ssl_context is None else "https"
    print(f"http-ceiling: listening {scheme} on {host}:{bound}", file=sys.stderr, flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.http_ceiling", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=None, help="the gateway.toml of the gateway it stands beside")
    p.add_argument("--port", type=int, default=None, help="override the configuration's port (default: its own)")
    args = p.parse_args(argv)
    if args.config is not None:
        config = load_config(args.config)
    else:
        config = GatewayConfig(server=ServerConfig(plain_http=True, port=0))
    if args.port is not None:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, port=args.port))
    asyncio.run(_serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
