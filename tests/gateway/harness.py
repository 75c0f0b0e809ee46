"""A real gateway on 127.0.0.1 with a throwaway SQLite store, and a signing client for it.

Identities are made from fixed seeds with the wire API directly, so these
tests depend on nothing but the gateway and the protocol core.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from gateway.config import GatewayConfig, LimitsConfig, ServerConfig
from gateway.server import GatewayServer, build_server
from gateway.staff.config import StaffConfig
from gateway.store_sqlite import SqliteStore
from wire import StationEntry, TabletEntry, WebServiceEntry, httpsig, key_id, make_snapshot, seal_batch

DAY_MS = 86_400_000


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class World:
    root: SigningKey = field(default_factory=lambda: SigningKey(seed("root")))
    data: PrivateKey = field(default_factory=lambda: PrivateKey(seed("data")))
    receipt: SigningKey = field(default_factory=lambda: SigningKey(seed("receipt")))
    tablets: dict[str, SigningKey] = field(default_factory=dict)
    stations: dict[str, SigningKey] = field(default_factory=dict)
    webs: dict[str, SigningKey] = field(default_factory=dict)  # self-enumeration web services (road web:<id>)
    status: dict[str, str] = field(default_factory=dict)
    institutions: dict[str, str] = field(default_factory=dict)  # tablet -> institution (default AB-000001)
    version: int = 0

    @classmethod
    def make(cls, n_tablets: int = 3, n_stations: int = 1) -> World:
        w = cls()
        for i in range(1, n_tablets + 1):
            w.tablets[f"TAB-{i:04d}"] = SigningKey(seed(f"tablet-{i}"))
        for i in range(1, n_stations + 1):
            w.stations[f"ST-{i:02d}"] = SigningKey(seed(f"station-{i}"))
        return w

    @property
    def data_public(self) -> bytes:
        return bytes(self.data.public_key)

    @property
    def gateway_keys(self) -> dict[bytes, bytes]:
        pub = bytes(self.receipt.verify_key)
        return {key_id(pub): pub}

    def snapshot(self, *, now: int | None = None, validity_ms: int = DAY_MS, version: int | None = None) -> bytes:
        now = now_ms() if now is None else now
        if version is None:
            self.version += 1
            version = self.version
        tablets = [
            TabletEntry(
                device_id=d,
                key_id=key_id(bytes(k.verify_key)),
                public_key=bytes(k.verify_key),
                usb_serial=f"SER{d}",
                institution=self.institutions.get(d, "AB-000001"),
                worker_id=f"W{d[-4:]}",
                status=self.status.get(d, "issued"),
                issued_at_ms=now - DAY_MS,
                returned_at_ms=None,
            )
            for d, k in self.tablets.items()
        ]
        stations = [
            StationEntry(s, key_id(bytes(k.verify_key)), bytes(k.verify_key), self.status.get(s, "active"))
            for s, k in self.stations.items()
        ]
        return make_snapshot(
            version=version,
            issued_at_ms=now,
            expires_at_ms=now + validity_ms,
            data_public_key=self.data_public,
            gateway_public_keys=[bytes(self.receipt.verify_key)],
            tablets=tablets,
            stations=stations,
            root_key=self.root,
            web_services=[
                WebServiceEntry(w, key_id(bytes(k.verify_key)), bytes(k.verify_key), self.status.get(w, "active"))
                for w, k in self.webs.items()
            ],
        )

    def batch(
        self,
        device_id: str,
        seq: int,
        sheets: list[Any],
        *,
        data_public: bytes | None = None,
        schema: str = "census-sheet/1",
        key: SigningKey | None = None,
    ) -> bytes:
        key = key or self.tablets.get(device_id) or self.webs[device_id]
        return seal_batch(
            device_id=device_id,
            seq=seq,
            sheets=sheets,
            sealed_at_ms=now_ms(),
            device_key=key,
            data_public_key=data_public or self.data_public,
            ephemeral_secret=os.urandom(32),
            schema=schema,
        )


def sign(
    method: str,
    url: str,
    key: SigningKey,
    body: bytes | None = None,
    content_type: str | None = None,
    *,
    created: int | None = None,
    nonce: str | None = None,
    query: str = "",
) -> dict[str, str]:
    parsed = aiohttp.client.URL(url)
    authority = parsed.host if parsed.is_default_port() else f"{parsed.host}:{parsed.port}"
    headers = httpsig.sign_request(
        method=method,
        authority=authority,
        path=parsed.raw_path,
        content_type=content_type,
        body=body,
        signing_key=key,
        created=created if created is not None else int(time.time()),
        nonce=nonce or base64.urlsafe_b64encode(os.urandom(18)).decode().rstrip("="),
        query=query,
    )
    if content_type:
        headers["Content-Type"] = content_type
    return headers


@dataclass
class Gateway:
    url: str
    server: GatewayServer
    db_path: Path

    @property
    def app(self) -> web.Application:
        return self.server.app

    @property
    def runner(self) -> web.AppRunner:
        return self.server.runner

    async def stop(self) -> None:
        await self.server.stop()


def gateway_config(
    db_path: Path, *, limits: LimitsConfig | None = None, server: ServerConfig | None = None
) -> GatewayConfig:
    """The harness configuration: plain HTTP on 127.0.0.1, a free port, no staff dashboard."""
    return GatewayConfig(
        database=f"sqlite:///{db_path}",
        server=server or ServerConfig(plain_http=True, port=0),
        limits=limits or LimitsConfig(),
        staff=StaffConfig(enabled=False),
    )


async def start_gateway(
    world: World,
    db_path: Path,
    *,
    snapshot: bytes | None = None,
    limits: LimitsConfig | None = None,
    server: ServerConfig | None = None,
    clock: Any = None,
    previous_data_keys: tuple[PrivateKey, ...] = (),
    ssl_context: ssl.SSLContext | None = None,
) -> Gateway:
    """The gateway built by the production factory (``gateway.server.build_server``), with its runner limits."""
    config = gateway_config(db_path, limits=limits, server=server)
    kwargs = {"clock": clock} if clock is not None else {}
    built = build_server(
        config,
        SqliteStore(db_path),
        data_key=world.data,
        previous_data_keys=previous_data_keys,
        receipt_key=world.receipt,
        root_public_key=bytes(world.root.verify_key),
        bootstrap_snapshot=snapshot if snapshot is not None else world.snapshot(),
        **kwargs,
    )
    await built.start(ssl_context=ssl_context)
    host, port = built.addresses[0]
    scheme = "http" if ssl_context is None else "https"
    return Gateway(f"{scheme}://{host}:{port}", built, db_path)


async def post_batch(
    session: aiohttp.ClientSession, gw: Gateway, envelope: bytes, key: SigningKey, **sign_kw: Any
) -> tuple[int, dict[str, Any]]:
    url = f"{gw.url}/v1/batches"
    headers = sign("POST", url, key, envelope, "application/vnd.sanaq.batch", **sign_kw)
    async with session.post(url, data=envelope, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def until(condition: Callable[[], bool], *, timeout_s: float, what: str, step_s: float = 0.02) -> float:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``. Returns the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        if condition():
            return loop.time() - started
        if loop.time() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(step_s)


def receipt_bytes(answer: dict[str, Any]) -> bytes:
    return base64.b64decode(answer["receipt"])
