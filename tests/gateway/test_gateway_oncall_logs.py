"""The gateway's lines for the person on call: the revoked signer is named, refusals on-call must see are
warnings, a batch hash is the full 64 hex digits, times carry ISO-8601, warnings carry a hint."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from nacl.signing import SigningKey

from runtime.logs import configure_logging
from wire.keyids import key_id

from .harness import World, post_batch, sign, start_gateway


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("info", stream, cache=False)
    yield stream
    structlog.reset_defaults()


def lines(stream: io.StringIO, event: str) -> list[dict[str, Any]]:
    out = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [e for e in out if e["event"] == event]


async def test_oncall_lines(world: World, tmp_path: Path, sheets: Any, json_log: io.StringIO) -> None:
    world.status["ST-01"] = "revoked"
    unknown_key = SigningKey.generate()  # a key the registry does not list
    gw = await start_gateway(world, tmp_path / "census.db")
    try:
        async with aiohttp.ClientSession() as session:
            url = f"{gw.url}/v1/registry"
            async with session.get(url, headers=sign("GET", url, world.stations["ST-01"])) as resp:
                assert resp.status == 403
            async with session.get(url, headers=sign("GET", url, unknown_key)) as resp:
                assert resp.status == 401
            status, _ = await post_batch(session, gw, world.batch("TAB-0001", 1, sheets(1)), world.tablets["TAB-0001"])
            assert status == 200
    finally:
        await gw.stop()
    [event] = lines(json_log, "security.event")
    station_key = bytes(world.stations["ST-01"].verify_key)
    assert (event["kind"], event["device_id"], event["key_id"]) == ("revoked-signer", "ST-01",
                                                                    key_id(station_key).hex())
    assert event["hint"] and event["level"] == "warning"
    refused = {e["code"]: e for e in lines(json_log, "request.refused")}
    assert refused["revoked"]["level"] == "warning" and refused["unknown-key"]["level"] == "warning"
    assert refused["unknown-key"]["hint"].endswith("sanaq-keys push")
    [stored] = lines(json_log, "batch.stored")
    assert len(stored["batch_hash"]) == 64 and int(stored["batch_hash"], 16) >= 0
