"""Back-pressure and failure answers: 429 per device, 503 when the store is gone, TLS with the census CA."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from gateway.config import LimitsConfig, ServerConfig
from gateway.context import CTX
from keys import tls

from .harness import World, now_ms, post_batch, sign, start_gateway


async def test_store_gone_is_503_with_retry_after(world: World, tmp_path: Path, session, sheets) -> None:
    gw = await start_gateway(world, tmp_path / "c.db")
    try:
        await gw.app[CTX].store.close()
        url = f"{gw.url}/v1/batches"
        body = world.batch("TAB-0001", 1, sheets(1))
        headers = sign("POST", url, world.tablets["TAB-0001"], body, "application/vnd.sanaq.batch")
        async with session.post(url, data=body, headers=headers) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "5"
            assert (await resp.json())["code"] == "unavailable"
    finally:
        gw.app[CTX].ready = False
        await gw.stop()


async def test_too_many_concurrent_requests_per_device_is_429(world: World, tmp_path: Path, sheets) -> None:
    gw = await start_gateway(world, tmp_path / "c.db", limits=LimitsConfig(max_inflight_per_device=1))
    ctx = gw.app[CTX]
    ctx.inflight_by_device["TAB-0001"] = 1  # one request of this device is being processed
    try:
        async with aiohttp.ClientSession() as session:
            status, problem = await post_batch(
                session, gw, world.batch("TAB-0001", 1, sheets(1)), world.tablets["TAB-0001"]
            )
            assert (status, problem["code"]) == (429, "too-many-requests")
            status, _ = await post_batch(
                session, gw, world.batch("TAB-0002", 1, sheets(1, device_id="TAB-0002")), world.tablets["TAB-0002"]
            )
            assert status == 200
    finally:
        await gw.stop()


async def test_tls_with_census_ca_pinned_by_client(world: World, tmp_path: Path, sheets) -> None:
    ca_key, ca_cert = tls.make_ca(now_ms=now_ms())
    key, cert = tls.make_server_cert(ca_key, ca_cert, ["localhost", "127.0.0.1"], now_ms=now_ms())
    tls.save_tls_key(tmp_path / "tls.key", key)
    tls.save_cert(tmp_path / "tls.crt", cert)
    tls.save_cert(tmp_path / "ca.crt", ca_cert)
    gw = await start_gateway(
        world,
        tmp_path / "c.db",
        server=ServerConfig(host="127.0.0.1", port=0),
        ssl_context=tls.server_ssl_context(tmp_path / "tls.crt", tmp_path / "tls.key"),
    )
    port = gw.server.addresses[0][1]
    url = f"https://127.0.0.1:{port}/v1/batches"
    body = world.batch("TAB-0001", 1, sheets(1))
    try:
        pinned = tls.client_ssl_context(tmp_path / "ca.crt")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pinned)) as s:
            headers = sign("POST", url, world.tablets["TAB-0001"], body, "application/vnd.sanaq.batch")
            async with s.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200
        _other_ca_key, other_ca = tls.make_ca(now_ms=now_ms())
        tls.save_cert(tmp_path / "other.crt", other_ca)
        wrong = tls.client_ssl_context(tmp_path / "other.crt")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=wrong)) as s:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with s.get(f"https://127.0.0.1:{port}/healthz"):
                    pass
    finally:
        await gw.stop()


async def test_logs_name_ids_but_carry_no_sheet_content(world: World, gw, session, sheets) -> None:
    batch_sheets = sheets(2)
    surname = batch_sheets[0]["persons"][0]["surname"]
    with capture_logs() as logs:
        status, _ = await post_batch(session, gw, world.batch("TAB-0001", 1, batch_sheets), world.tablets["TAB-0001"])
        await asyncio.sleep(0)
    assert status == 200
    stored = [e for e in logs if e["event"] == "batch.stored"]
    assert len(stored) == 1
    assert stored[0]["device_id"] == "TAB-0001" and stored[0]["seq"] == 1 and stored[0]["sheets"] == 2
    assert surname not in repr(logs)
