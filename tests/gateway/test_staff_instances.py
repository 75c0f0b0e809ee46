"""The staff dashboard on two real ``sanaq-gateway serve`` processes sharing one PostgreSQL database (ADR 0012).

The first admin is made with ``sanaq-gateway staff add-user --config`` of one
instance. A session made at instance A works at instance B (and ends at A when it is
ended at B); a sheet ingested at B reaches the event stream of a browser
connected to A. The feed's own polling is set to a minute, so the update can
only have come through the database's NOTIFY.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway._schema_postgres import migrate
from tablet.generator import generate_sheets

from .harness import World, post_batch
from .pg_cluster import Cluster, pg_cluster  # noqa: F401 - fixture
from .staff_browser import StaffClient, csrf_of
from .test_gateway_multi_instance import Instance, database, start_instance
from .test_staff_dashboard import read_event

pytestmark = pytest.mark.postgres

_PASSWORD = "two gateways, one session"
_SHEETS = '<span class="n" id="n-sheets">{}</span>'


async def _stop(instances: list[Instance]) -> None:
    for inst in instances:
        if inst.proc.returncode is None:
            inst.proc.send_signal(signal.SIGTERM)
    for inst in instances:
        try:
            assert await asyncio.wait_for(inst.proc.wait(), 30) == 0
        finally:
            if inst.proc.returncode is None:
                inst.proc.kill()
                await inst.proc.wait()
            inst.drain.cancel()


async def test_a_session_and_live_updates_cross_gateway_instances(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    world = World.make(n_tablets=2, n_stations=0)
    async with database(cluster) as name:
        dsn = cluster.dsn(name)
        await migrate(dsn)
        (tmp_path / "codes.pepper").write_bytes(os.urandom(32))  # the one pepper every instance holds
        staff_toml = (
            'language = "en"\nrefresh_interval_s = 60.0\nfull_refresh_s = 600.0\nheartbeat_s = 1.0\n'
            f'codes_pepper_file = "{tmp_path / "codes.pepper"}"\n'
        )
        shared = world.snapshot(version=1)
        instances = list(
            await asyncio.gather(
                *(
                    start_instance(world, tmp_path, f"gw-{n}", dsn, snapshot=shared, staff_toml=staff_toml)
                    for n in ("a", "b")
                )
            )
        )
        a, b = instances
        made = await asyncio.create_subprocess_exec(  # the first admin, as docs/operations.md says: once, for all
            sys.executable, "-m", "gateway", "staff", "add-user", "--config", str(tmp_path / "gw-a" / "gateway.toml"),
            "--username", "admin", "--role", "admin", "--password-file", "-",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(made.communicate((_PASSWORD + "\n").encode()), 60)
        assert made.returncode == 0 and out == b"added admin (admin)\n", err
        client = StaffClient(a)  # type: ignore[arg-type]  # only .url is used
        try:
            assert await client.login("admin", _PASSWORD) == 303
            client.gw = b  # the same cookie, the other process
            status, page, _ = await client.get("/staff/")
            assert status == 200 and csrf_of(page) == client.csrf

            client.gw = a
            async with client.session.get(a.url + "/staff/events") as stream:
                assert stream.status == 200
                event, data = await read_event(stream)
                assert event == "update" and _SHEETS.format(0) in json.loads(data)["fragments"]["summary"]
                async with aiohttp.ClientSession() as s:
                    envelope = world.batch("TAB-0001", 1, generate_sheets(8, 2, device_id="TAB-0001"))
                    assert (await post_batch(s, b, envelope, world.tablets["TAB-0001"]))[0] == 200  # type: ignore[arg-type]
                started = asyncio.get_running_loop().time()
                while _SHEETS.format(2) not in json.loads(data)["fragments"]["summary"]:
                    event, data = await read_event(stream, timeout_s=15)
                assert asyncio.get_running_loop().time() - started < 15

            client.gw = b  # a logout at B ends the session everywhere
            assert (await client.post("/staff/logout", {"csrf": client.csrf}))[0] == 303
            client.gw = a
            assert (await client.get("/staff/"))[0] == 303
        finally:
            await client.close()
            await _stop(instances)
