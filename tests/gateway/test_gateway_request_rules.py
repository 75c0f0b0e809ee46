"""The request rules docs/protocol.md section 13.1 makes explicit, checked against a real gateway on loopback.

Each test names the sentence it checks. The GET-with-body cases are issue 13 finding 13: on b916ae2 a signed
GET carrying a body (Content-Length or chunked) was answered 200.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from wire import decode_envelope

from .harness import Gateway, World, now_ms, post_batch, sign, start_gateway

BATCH = "application/vnd.sanaq.batch"


async def _get_state(session: aiohttp.ClientSession, gw: Gateway, world: World, device: str = "TAB-0001",
                     path: str | None = None, **kw: Any) -> tuple[int, dict[str, Any]]:
    url = f"{gw.url}{path or f'/v1/devices/{device}/state'}"
    headers = sign("GET", url, world.tablets["TAB-0001"]) | kw.pop("headers", {})
    async with session.get(url, headers=headers, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def _chunks() -> AsyncIterator[bytes]:
    yield b"hidden"


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("content-length body", {"data": b"x"}),
        ("chunked body", {"data": _chunks}),
    ],
)
async def test_signed_get_with_a_body_is_bad_signature_input(
    name: str, extra: dict[str, Any], world: World, gw: Gateway, session: aiohttp.ClientSession
) -> None:
    if extra.get("data") is _chunks:
        extra = {"data": _chunks()}
    status, problem = await _get_state(session, gw, world, **extra)
    assert (status, problem["code"]) == (401, "bad-signature-input"), name


async def test_signed_get_with_content_length_zero_is_served(world: World, gw: Gateway, session) -> None:
    status, answer = await _get_state(session, gw, world, headers={"Content-Length": "0"})
    assert status == 200 and answer["device_id"] == "TAB-0001"


async def test_query_string_is_bad_signature_input(world: World, gw: Gateway, session) -> None:
    url = f"{gw.url}/v1/devices/TAB-0001/state"
    headers = sign("GET", url, world.tablets["TAB-0001"])
    async with session.get(url + "?x=1", headers=headers) as resp:
        assert (resp.status, (await resp.json())["code"]) == (401, "bad-signature-input")


@pytest.mark.parametrize("method", ["PATCH", "DELETE", "OPTIONS"])
async def test_other_methods_are_405(method: str, world: World, gw: Gateway, session) -> None:
    async with session.request(method, f"{gw.url}/v1/batches") as resp:
        assert (resp.status, (await resp.json(content_type=None))["code"]) == (405, "method-not-allowed")


async def test_percent_encoded_device_id_is_decoded_before_matching(world: World, gw: Gateway, session) -> None:
    # the signature covers the path as sent; the gateway matches the decoded segment
    status, answer = await _get_state(session, gw, world, path="/v1/devices/TAB%2D0001/state")
    assert status == 200 and answer["device_id"] == "TAB-0001"
    status, problem = await _get_state(session, gw, world, path="/v1/devices/TAB%2D0002/state")
    assert (status, problem["code"]) == (403, "forbidden")


async def test_content_type_is_checked_before_the_signature(world: World, gw: Gateway, session, sheets) -> None:
    envelope = world.batch("TAB-0001", 1, sheets(1))
    async with session.post(f"{gw.url}/v1/batches", data=envelope, headers={"Content-Type": "text/plain"}) as resp:
        assert (resp.status, (await resp.json())["code"]) == (415, "unsupported-media-type")
    async with session.post(f"{gw.url}/v1/batches", data=envelope, headers={"Content-Type": BATCH}) as resp:
        assert (resp.status, (await resp.json())["code"]) == (401, "missing-signature")


async def test_content_type_parameters_are_allowed(world: World, gw: Gateway, session, sheets) -> None:
    envelope = world.batch("TAB-0001", 1, sheets(1))
    url = f"{gw.url}/v1/batches"
    headers = sign("POST", url, world.tablets["TAB-0001"], envelope, BATCH + "; charset=binary")
    async with session.post(url, data=envelope, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def test_a_refused_request_does_not_consume_its_nonce(world: World, gw: Gateway, session, sheets) -> None:
    key = world.tablets["TAB-0001"]
    nonce = "refused-then-reused-0001"
    wrong_schema = world.batch("TAB-0001", 1, sheets(1), schema="other-sheet/1")
    status, problem = await post_batch(session, gw, wrong_schema, key, nonce=nonce)
    assert (status, problem["code"]) == (400, "unsupported-schema")
    good = world.batch("TAB-0001", 1, sheets(1))
    status, _ = await post_batch(session, gw, good, key, nonce=nonce)
    assert status == 200
    status, problem = await post_batch(session, gw, good, key, nonce=nonce)  # an accepted request consumed it
    assert (status, problem["code"]) == (401, "replay")
    status, answer = await post_batch(session, gw, good, key)  # a duplicate consumes its nonce too
    assert answer["duplicate"] is True


async def test_a_duplicate_consumes_its_nonce(world: World, gw: Gateway, session, sheets) -> None:
    key = world.tablets["TAB-0001"]
    good = world.batch("TAB-0001", 1, sheets(1))
    assert (await post_batch(session, gw, good, key))[0] == 200
    nonce = "duplicate-consumes-0001"
    status, answer = await post_batch(session, gw, good, key, nonce=nonce)
    assert status == 200 and answer["duplicate"] is True
    status, problem = await post_batch(session, gw, good, key, nonce=nonce)
    assert (status, problem["code"]) == (401, "replay")


@pytest.mark.parametrize(("offset_ms", "expected"), [
    (300_999, 200),    # floor(now / 1000) - created = 300: inside
    (301_000, 401),    # 301 s: clock-skew
    (-300_000, 200),   # created 300 s in the future: inside
    (-301_000, 401),
])
async def test_created_window_edges_in_whole_seconds(
    offset_ms: int, expected: int, world: World, tmp_path, session, sheets
) -> None:
    created = now_ms() // 1000
    gw = await start_gateway(world, tmp_path / "census.db", clock=lambda: created * 1000 + offset_ms)
    try:
        envelope = world.batch("TAB-0001", 1, sheets(1))
        status, answer = await post_batch(session, gw, envelope, world.tablets["TAB-0001"], created=created)
        assert status == expected, answer
        if expected == 401:
            assert answer["code"] == "clock-skew" and "server_time_ms" in answer
    finally:
        await gw.stop()


async def test_put_registry_ignores_signature_fields(world: World, gw: Gateway, session) -> None:
    snapshot = world.snapshot()  # the next version
    headers = {"Content-Type": "application/vnd.sanaq.snapshot", "Signature": "sanaq=:AAAA:",
               "Signature-Input": "garbage", "Content-Digest": "sha-256=:AAAA:"}
    async with session.put(f"{gw.url}/v1/registry", data=snapshot, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def test_last_sync_is_the_latest_receive_time_not_the_highest_seq(tmp_path, session, sheets) -> None:
    world = World.make()
    clock = {"now": now_ms()}
    gw = await start_gateway(world, tmp_path / "census.db", clock=lambda: clock["now"])
    try:
        key = world.tablets["TAB-0001"]
        created = clock["now"] // 1000
        assert (await post_batch(session, gw, world.batch("TAB-0001", 5, sheets(1)), key, created=created))[0] == 200
        clock["now"] += 60_000
        late = world.batch("TAB-0001", 2, sheets(1, seed=3))
        assert decode_envelope(late).header.seq == 2
        assert (await post_batch(session, gw, late, key, created=created + 60))[0] == 200
        status, state = await _get_state(session, gw, world, headers=sign(
            "GET", f"{gw.url}/v1/devices/TAB-0001/state", key, created=created + 60))
        assert status == 200 and state["last_sync_ms"] == clock["now"] and state["max_seq"] == 5
    finally:
        await gw.stop()
