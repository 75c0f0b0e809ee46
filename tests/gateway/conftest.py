from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tablet.generator import generate_sheets

from .harness import Gateway, World, start_gateway


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
