"""Registry snapshots at the gateway: newer accepted, older/expired/forged refused, revocation immediate."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from structlog.testing import capture_logs

from gateway.config import ServerConfig
from gateway.context import CTX

from .harness import DAY_MS, Gateway, World, now_ms, post_batch, sign, start_gateway

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


# (what the store holds at the restart, the event that says the bootstrap was seen and set aside)
RESTART_CASES = [
    pytest.param("same", "registry.bootstrap.stored", id="bootstrap equal to the stored snapshot"),
    pytest.param("older", "registry.bootstrap.older", id="bootstrap older than the stored snapshot (after a PUT)"),
]


@pytest.mark.parametrize(("case", "expected_event"), RESTART_CASES)
async def test_restart_with_the_usual_bootstrap_raises_no_alarm(
    case: str, expected_event: str, world: World, tmp_path: Path, session
) -> None:
    """Issue 13, finding 12: no ``registry.snapshot.refused`` (an event that needs a person) at a normal restart."""
    bootstrap = world.snapshot()  # v1
    gw = await start_gateway(world, tmp_path / "c.db", snapshot=bootstrap)
    try:
        if case == "older":
            assert (await put(session, gw, world.snapshot()))[0] == 200  # v2 in the store
    finally:
        await gw.stop()
    with capture_logs() as logs:
        gw = await start_gateway(world, tmp_path / "c.db", snapshot=bootstrap)
        await gw.stop()
    events = [e["event"] for e in logs]
    assert "registry.snapshot.refused" not in events, logs
    assert expected_event in events
    assert not [e for e in logs if e.get("log_level") in ("warning", "error", "critical")], logs
    with sqlite3.connect(gw.db_path) as conn:
        assert conn.execute("SELECT version FROM registry").fetchone() == ((1,) if case == "same" else (2,))


async def test_an_expired_bootstrap_beside_a_valid_stored_snapshot_raises_no_alarm(
    world: World, tmp_path: Path
) -> None:
    """The install-time credential outlives its validity (7 days) while the store moves on by PUT."""
    expired = world.snapshot(now=now_ms() - 10 * DAY_MS, validity_ms=DAY_MS)  # v1, expired 9 days ago
    gw = await start_gateway(world, tmp_path / "c.db", snapshot=world.snapshot())  # v2 stored
    await gw.stop()
    with capture_logs() as logs:
        gw = await start_gateway(world, tmp_path / "c.db", snapshot=expired)
        held = gw.app[CTX].trust.current
        await gw.stop()
    assert "registry.bootstrap.expired" in [e["event"] for e in logs]
    assert not [e for e in logs if e.get("log_level") in ("warning", "error", "critical")], logs
    assert held is not None and held.snapshot.version == 2


async def test_an_expired_bootstrap_with_nothing_stored_is_an_alarm(world: World, tmp_path: Path) -> None:
    expired = world.snapshot(now=now_ms() - 10 * DAY_MS, validity_ms=DAY_MS)
    with capture_logs() as logs:
        gw = await start_gateway(world, tmp_path / "c.db", snapshot=expired)
        await gw.stop()
    refused = [(e["source"], e["code"]) for e in logs if e["event"] == "registry.snapshot.refused"]
    assert refused == [("bootstrap", "expired")]
    assert "registry.missing" in [e["event"] for e in logs]


async def test_a_bootstrap_unlike_the_stored_snapshot_of_its_version_is_still_an_alarm(
    world: World, tmp_path: Path
) -> None:
    stored = world.snapshot(version=3)
    gw = await start_gateway(world, tmp_path / "c.db", snapshot=stored)
    await gw.stop()
    world.status["TAB-0002"] = "lost"
    other = world.snapshot(version=3)  # same version, other content: someone published two v3
    with capture_logs() as logs:
        gw = await start_gateway(world, tmp_path / "c.db", snapshot=other)
        await gw.stop()
    refused = [e for e in logs if e["event"] == "registry.snapshot.refused"]
    assert [(e["source"], e["code"], e["version"]) for e in refused] == [("bootstrap", "rollback", 3)]
    with sqlite3.connect(gw.db_path) as conn:
        assert bytes(conn.execute("SELECT snapshot FROM registry").fetchone()[0]) == stored


async def test_a_registry_copy_the_database_cannot_confirm_is_not_trusted_past_the_bound(
    world: World, tmp_path: Path, session, sheets
) -> None:
    """``server.registry_staleness_s``: once the database cannot be asked, the copy is trusted no longer than
    the bound: ``/readyz`` says so and a signed request is 503 (``registry.unconfirmed``), not served."""
    server = ServerConfig(plain_http=True, port=0, registry_staleness_s=0.5)
    gw = await start_gateway(world, tmp_path / "c.db", server=server)
    ctx = gw.app[CTX]
    try:
        assert (await post_batch(session, gw, world.batch("TAB-0001", 1, sheets(1)), world.tablets["TAB-0001"]))[
            0
        ] == 200
        await ctx.store.close()  # the database is gone from under the instance
        with capture_logs() as logs:
            readiness: list[dict[str, object]] = []

            async def probe() -> bool:
                async with session.get(f"{gw.url}/readyz") as resp:
                    readiness.append(await resp.json())
                    return resp.status == 503

            async def unready() -> None:
                while True:
                    if await probe():
                        return
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(unready(), 5)
            url = f"{gw.url}/v1/registry"
            async with session.get(url, headers=sign("GET", url, world.stations["ST-01"])) as resp:
                status, problem = resp.status, await resp.json()
    finally:
        ctx.ready = False
        await gw.stop()
    assert readiness[-1]["problems"] == ["registry not confirmed with the database"], readiness[-1]
    assert (status, problem["code"]) == (503, "unavailable"), problem
    assert [e["event"] for e in logs if e["event"] == "registry.unconfirmed"] == ["registry.unconfirmed"]
