"""Registry snapshots at the gateway: newer accepted, older/expired/forged refused, revocation immediate."""

from __future__ import annotations

import sqlite3

from nacl.signing import SigningKey

from .harness import Gateway, World, now_ms, post_batch, sign

SNAP = "application/vnd.sanaq.snapshot"


async def put(session, gw: Gateway, body: bytes) -> tuple[int, dict]:
    async with session.put(f"{gw.url}/v1/registry", data=body, headers={"Content-Type": SNAP}) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_newer_snapshot_accepted_and_served(world: World, gw: Gateway, session) -> None:
    status, body = await put(session, gw, world.snapshot())
    assert (status, body) == (200, {"version": 2})
    url = f"{gw.url}/v1/registry"
    async with session.get(url, headers=sign("GET", url, world.stations["ST-01"])) as resp:
        assert resp.status == 200
        assert resp.headers["X-Sanaq-Registry-Version"] == "2"
    with sqlite3.connect(gw.db_path) as conn:
        assert conn.execute("SELECT version FROM registry").fetchone() == (2,)


async def test_rollback_expired_and_forged_snapshots_refused(world: World, gw: Gateway, session) -> None:
    assert (await put(session, gw, world.snapshot()))[0] == 200  # now at v2
    status, problem = await put(session, gw, world.snapshot(version=1))
    assert (status, problem["code"]) == (409, "rollback")
    status, problem = await put(session, gw, world.snapshot(now=now_ms() - 10_000, validity_ms=5_000))
    assert (status, problem["code"]) == (410, "expired")
    forger = World.make()
    forger.root = SigningKey(b"\x66" * 32)
    status, problem = await put(session, gw, forger.snapshot(version=50))
    assert (status, problem["code"]) == (401, "unknown-key")
    status, problem = await put(session, gw, b"SNQS\x01garbage")
    assert (status, problem["code"]) == (400, "truncated")
    with sqlite3.connect(gw.db_path) as conn:
        assert conn.execute("SELECT version FROM registry").fetchone() == (2,)


async def test_revocation_takes_effect_with_the_next_snapshot(world: World, gw: Gateway, session, sheets) -> None:
    key = world.tablets["TAB-0001"]
    assert (await post_batch(session, gw, world.batch("TAB-0001", 1, sheets(1)), key))[0] == 200
    world.status["TAB-0001"] = "revoked"
    assert (await put(session, gw, world.snapshot()))[0] == 200
    status, problem = await post_batch(session, gw, world.batch("TAB-0001", 2, sheets(1)), key)
    assert (status, problem["code"]) == (403, "revoked")


async def test_registry_get_requires_a_signature(gw: Gateway, session) -> None:
    async with session.get(f"{gw.url}/v1/registry") as resp:
        assert resp.status == 401
        assert (await resp.json())["code"] == "missing-signature"
