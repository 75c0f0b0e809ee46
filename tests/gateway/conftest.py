from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tablet.generator import generate_sheets

from .harness import Gateway, World, start_gateway
from .pg_cluster import Cluster, create_database, drop_database, pg_cluster  # noqa: F401 - fixture


@pytest.fixture
def world() -> World:
    return World.make()


@pytest.fixture
def sheets() -> Any:
    def make(n: int = 3, seed: int = 7, device_id: str = "TAB-0001") -> list[Any]:
        return generate_sheets(seed, n, device_id=device_id)

    return make


@pytest.fixture
async def gw(world: World, tmp_path: Path) -> AsyncIterator[Gateway]:
    gateway = await start_gateway(world, tmp_path / "census.db")
    yield gateway
    await gateway.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def staff_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The engine a staff test bed runs on: a SQLite URL in ``tmp_path``, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'census.db'}"
        return
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    name = await create_database(cluster)
    yield cluster.dsn(name)
    await drop_database(cluster, name)
