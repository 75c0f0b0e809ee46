"""``GatewayServer``: the one factory for the gateway's app, its runner and its listener.

Production (``sanaq-gateway serve``) and the tests build the server here, so
the runner-level limits the configuration promises are the ones a test meets:

============================  =====================================================
``limits.max_header_bytes``   longest request line and longest header field (431/400)
``limits.max_body_bytes``     body cap whatever the framing (413), ``client_max_size``
``server.idle_timeout_s``     idle keep-alive connections and unfinished request heads
``server.shutdown_timeout_s`` time in-flight requests get after SIGTERM
(always)                      ``auto_decompress=False``: a compressed body is refused
                              (415), never inflated
============================  =====================================================

The request body deadline and the buffered-body budget are applied by the
handlers (``web_common.read_body``), because aiohttp has no runner option for
them.
"""

from __future__ import annotations

import asyncio.selector_events
import asyncio.sslproto
import gc
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from .app import create_app
from .config import GatewayConfig
from .context import CTX, GatewayContext, wall_clock_ms
from .device_slots import DeviceSlots
from .staff import setup_staff
from .store import CensusStore

__all__ = [
    "GatewayServer",
    "bound_tls_read_buffer",
    "build_server",
    "freeze_startup_objects",
    "runner_options",
    "site_options",
]

_BACKLOG = 2048
_LINGER_S = 2.0  # after refusing a body mid-way, discard what still comes this long so the client sees the answer
# asyncio's TLS protocol gives every connection a zero-filled read buffer of ``SSLProtocol.max_size``
# (256 KiB in CPython 3.11-3.13): 256 MiB of resident memory at 1,024 connections. A TLS record carries
# at most 16 KiB of plaintext, so 32 KiB holds one whole record and its overhead (docs/adr/0014-memory-and-tail.md).
# The buffer only carries ciphertext from one recv_into() to the TLS object, so one buffer per thread
# serves every connection of a selector event loop (``_SharedReadBufferSSLProtocol``).
TLS_READ_BUFFER_BYTES = 32 * 1024
_thread_buffers = threading.local()


class _SharedReadBufferSSLProtocol(asyncio.sslproto.SSLProtocol):
    """asyncio's TLS protocol reading ciphertext into one buffer per thread instead of one per connection.

    On a selector event loop the socket transport asks ``get_buffer``, fills
    the buffer with ``recv_into`` and hands it to ``buffer_updated``, which
    copies the bytes into the TLS object's incoming BIO, all in one call on
    the loop's thread; nothing reads the buffer after that. So connections
    can take turns with the same buffer, and 1,024 connections hold one
    buffer, not 1,024 (32 MiB less). Other loops (the proactor keeps the
    buffer while a read is pending) get a buffer of their own, as before.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._own_buffer = not isinstance(self._loop, asyncio.selector_events.BaseSelectorEventLoop)
        if not self._own_buffer:  # the per-connection buffer super() made is freed here
            self._ssl_buffer = bytearray()
            self._ssl_buffer_view = memoryview(self._ssl_buffer)

    def get_buffer(self, n: int) -> memoryview:
        if self._own_buffer:
            view: memoryview = super().get_buffer(n)
            return view
        size = self.max_size
        shared: memoryview | None = getattr(_thread_buffers, "view", None)
        if shared is None or len(shared) != size:
            shared = _thread_buffers.view = memoryview(bytearray(size))
        self._ssl_buffer_view = shared  # what buffer_updated() copies from, right after recv_into()
        return shared


def freeze_startup_objects() -> None:
    """Move everything made so far (modules, keys, registry, app) out of the garbage collector's sight.

    A full collection otherwise walks those ~100,000 objects each time and
    stalled the event loop for up to 70 ms under load, the open-loop latency
    tail (docs/adr/0014-memory-and-tail.md). They live as long as the
    process, so nothing collectable is lost. Called by ``serve`` once it
    listens (not by ``start``: a test process builds many servers).
    """
    gc.collect()
    gc.freeze()


def bound_tls_read_buffer(size: int = TLS_READ_BUFFER_BYTES) -> None:
    """Cap asyncio's TLS read buffer and share it among a thread's connections (process-wide; before listening)."""
    if getattr(asyncio.sslproto.SSLProtocol, "max_size", 0) > size:
        asyncio.sslproto.SSLProtocol.max_size = size
    if asyncio.sslproto.SSLProtocol is not _SharedReadBufferSSLProtocol:
        _SharedReadBufferSSLProtocol.max_size = asyncio.sslproto.SSLProtocol.max_size
        asyncio.sslproto.SSLProtocol = _SharedReadBufferSSLProtocol  # type: ignore[misc]


@dataclass
class GatewayServer:
    """An app and its runner; ``start`` binds the listener, ``stop`` drains and closes the store."""

    config: GatewayConfig
    app: web.Application
    runner: web.AppRunner

    @property
    def ctx(self) -> GatewayContext:
        return self.app[CTX]

    async def start(self, *, ssl_context: ssl.SSLContext | None = None, sockets: Sequence[socket.socket] = ()) -> None:
        """Bind ``server.host``:``server.port``, or serve on ``sockets`` a supervisor bound (``gateway.supervisor``)."""
        await self.runner.setup()
        if ssl_context is not None:
            bound_tls_read_buffer()
        sites: list[web.BaseSite] = [
            web.SockSite(self.runner, sock, ssl_context=ssl_context, backlog=_BACKLOG) for sock in sockets
        ]
        if not sockets:
            sites.append(
                web.TCPSite(
                    self.runner,
                    self.config.server.host,
                    self.config.server.port,
                    ssl_context=ssl_context,
                    **site_options(),
                )
            )
        for site in sites:
            await site.start()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(str(a[0]), int(a[1])) for a in self.runner.addresses]

    async def stop(self) -> None:
        await self.runner.cleanup()


def build_server(
    config: GatewayConfig,
    store: CensusStore,
    *,
    data_key: PrivateKey,
    previous_data_keys: Sequence[PrivateKey] = (),
    receipt_key: SigningKey,
    root_public_key: bytes,
    bootstrap_snapshot: bytes | None = None,
    clock: Callable[[], int] = wall_clock_ms,
    device_lock_fd: int | None = None,
) -> GatewayServer:
    """The gateway app (with the staff dashboard when ``config.staff.enabled``) and its configured runner.

    ``device_lock_fd``: the supervisor's lock file, so the per-device in-flight cap holds across workers.
    """
    app = create_app(
        config,
        store,
        data_key=data_key,
        previous_data_keys=previous_data_keys,
        receipt_key=receipt_key,
        root_public_key=root_public_key,
        bootstrap_snapshot=bootstrap_snapshot,
        clock=clock,
    )
    if device_lock_fd is not None:
        app[CTX].device_slots = DeviceSlots(config.limits.max_inflight_per_device, device_lock_fd)
    setup_staff(app, app[CTX], config.staff)  # no-op when [staff] enabled = false
    return GatewayServer(config, app, web.AppRunner(app, **runner_options(config)))


def runner_options(config: GatewayConfig) -> dict[str, Any]:
    """The gateway's ``web.AppRunner`` settings (``bench.http_ceiling`` runs a bare app with the same)."""
    return {
        "handle_signals": False,
        "shutdown_timeout": config.server.shutdown_timeout_s,
        "access_log": None,
        "max_line_size": config.limits.max_header_bytes,
        "max_field_size": config.limits.max_header_bytes,
        "keepalive_timeout": config.server.idle_timeout_s,  # also bounds a request head never finished
        "auto_decompress": False,  # a compressed body is refused (415), never inflated
        "lingering_time": _LINGER_S,
    }


def site_options() -> dict[str, Any]:
    """The listener's ``web.TCPSite`` settings besides address and TLS context."""
    return {"backlog": _BACKLOG, "reuse_address": True}
