"""Data-key rotation: batches sealed to a retired data key still open; unknown keys stay refused."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from nacl.public import PrivateKey

from .harness import World, post_batch, start_gateway


async def test_batch_sealed_to_retired_data_key_is_opened(world: World, tmp_path: Path, sheets) -> None:
    retired = world.data
    world.data = PrivateKey(b"\x33" * 32)  # rotated: the snapshot now names the new data key
    gw = await start_gateway(world, tmp_path / "c.db", previous_data_keys=(retired,))
    try:
        async with aiohttp.ClientSession() as session:
            old = world.batch("TAB-0001", 1, sheets(1), data_public=bytes(retired.public_key))
            status, answer = await post_batch(session, gw, old, world.tablets["TAB-0001"])
            assert status == 200, answer
            new = world.batch("TAB-0001", 2, sheets(1, seed=2))
            assert (await post_batch(session, gw, new, world.tablets["TAB-0001"]))[0] == 200
            stranger = world.batch(
                "TAB-0001", 3, sheets(1, seed=3), data_public=bytes(PrivateKey(b"\x44" * 32).public_key)
            )
            status, problem = await post_batch(session, gw, stranger, world.tablets["TAB-0001"])
            assert (status, problem["code"]) == (400, "wrong-recipient")
    finally:
        await gw.stop()
