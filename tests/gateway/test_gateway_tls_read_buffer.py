"""asyncio's TLS read buffer, shared by a thread's connections (gateway.server.bound_tls_read_buffer, ADR 0014).

Real TLS over loopback with a census CA made by ``keys.tls``: many connections
upload distinct bodies at once, in small writes so their records interleave,
and every byte must arrive where it was sent; the same with two event loops in
two threads at once, which must not share a buffer.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.server import TLS_READ_BUFFER_BYTES, bound_tls_read_buffer
from keys import tls

CONNECTIONS = 96
BODY_BYTES = 3 * TLS_READ_BUFFER_BYTES + 777  # more than one buffer, not a multiple of it


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    now = time.time_ns() // 1_000_000
    ca_key, ca_cert = tls.make_ca(now_ms=now)
    key, cert = tls.make_server_cert(ca_key, ca_cert, now_ms=now)
    tls.save_cert(d / "ca.crt", ca_cert)
    tls.save_cert(d / "server.crt", cert)
    tls.save_tls_key(d / "server.key", key)
    return d / "ca.crt", d / "server.crt", d / "server.key"


async def _digest(request: web.Request) -> web.Response:
    return web.Response(text=hashlib.sha256(await request.read()).hexdigest())


async def _uploads(tls_files: tuple[Path, Path, Path], connections: int) -> tuple[int, set[int]]:
    """Start a TLS server, upload ``connections`` distinct bodies at once; (bodies intact, buffer ids seen)."""
    ca, cert, key = tls_files
    bound_tls_read_buffer()
    app = web.Application(client_max_size=4 * BODY_BYTES)
    app.router.add_post("/digest", _digest)
    seen: set[int] = set()

    async def note_buffers(request: web.Request, handler):  # type: ignore[no-untyped-def]
        protocol = request.transport.get_protocol() if request.transport else None  # the SSL transport's
        ssl_protocol = getattr(request.transport, "_ssl_protocol", protocol)
        seen.add(id(ssl_protocol.get_buffer(-1).obj))
        return await handler(request)

    app.middlewares.append(web.middleware(note_buffers))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_ssl_context(cert, key))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        connector = aiohttp.TCPConnector(limit=connections, ssl=tls.client_ssl_context(ca))
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(n: int) -> bool:
                body = os.urandom(BODY_BYTES)

                async def chunks():  # type: ignore[no-untyped-def]
                    for at in range(0, len(body), 5_000):  # small writes: the connections' records interleave
                        yield body[at : at + 5_000]
                        await asyncio.sleep(0)

                async with session.post(f"https://127.0.0.1:{port}/digest", data=chunks()) as r:
                    return r.status == 200 and await r.text() == hashlib.sha256(body).hexdigest()

            results = await asyncio.gather(*(one(n) for n in range(connections)))
    finally:
        await runner.cleanup()
    return sum(results), seen


async def test_many_tls_connections_share_one_read_buffer_and_every_byte_arrives(tls_files) -> None:
    intact, buffers = await _uploads(tls_files, CONNECTIONS)
    assert intact == CONNECTIONS
    assert len(buffers) == 1  # one buffer for all the connections of this thread (before: one each)


def test_two_event_loops_in_two_threads_each_read_into_their_own_buffer(tls_files) -> None:
    results: list[tuple[int, set[int]]] = []
    errors: list[BaseException] = []
    both_done = threading.Barrier(2, timeout=120)  # both buffers alive when their ids are compared

    def serve_and_upload() -> None:
        try:
            results.append(asyncio.run(_uploads(tls_files, CONNECTIONS // 2)))
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)
        both_done.wait()

    threads = [threading.Thread(target=serve_and_upload) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert [intact for intact, _ in results] == [CONNECTIONS // 2] * 2
    (first,), (second,) = (buffers for _, buffers in results)
    assert first != second
