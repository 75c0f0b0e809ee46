"""What every attack row shares: a gateway on loopback, a raw sender, and the store-unchanged check.

``StoreState`` reads every table of the census store except
``security_events`` (which an attack is expected to grow); a refused attack
must leave it equal, byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from tests.gateway.harness import Gateway, World, start_gateway

__all__ = ["Sent", "StoreState", "gateway_for", "security_events", "send", "store_state"]

TABLES = ("batches", "sheets", "quarantine", "nonces", "registry", "custody")


@dataclass(frozen=True)
class StoreState:
    digests: dict[str, str]
    counts: dict[str, int]


def store_state(db: Path) -> StoreState:
    digests, counts = {}, {}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for table in TABLES:
            rows = conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            digests[table] = hashlib.sha256(repr(rows).encode()).hexdigest()
            counts[table] = len(rows)
    return StoreState(digests, counts)


def security_events(db: Path) -> list[tuple[str, str | None, int | None]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT kind, device_id, seq FROM security_events ORDER BY id").fetchall()


@dataclass(frozen=True)
class Sent:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


async def send(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], body: bytes | None = None
) -> Sent:
    """Send as given: the URL is taken as already encoded (``/v1/%62atches`` stays so on the wire)."""
    async with session.request(
        method, URL(url, encoded=True), data=body, headers=headers, skip_auto_headers=("Content-Type",)
    ) as resp:
        raw = await resp.read()
        try:
            parsed: Any = await resp.json(content_type=None)
        except ValueError:
            parsed = raw
        return Sent(resp.status, parsed, dict(resp.headers))


@contextlib.asynccontextmanager
async def gateway_for(world: World, db: Path, **kw: Any) -> AsyncIterator[Gateway]:
    gw = await start_gateway(world, db, **kw)
    try:
        yield gw
    finally:
        await gw.stop()
