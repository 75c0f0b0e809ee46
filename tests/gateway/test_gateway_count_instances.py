# ruff: noqa: RUF001  (Cyrillic names in the test data)
"""Person-level counting across two real ``sanaq-gateway serve`` processes on one PostgreSQL database.

For each list entry, at the same moment: tablet A's batch goes online to gw-1 and (the same bytes) through
the USB station to gw-2, and tablet B's batch naming the same entry goes online to gw-2. Afterwards: both
batches stored once, both sheets kept, the entry counted once, exactly one review case per entry."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import aiohttp
import psycopg
import pytest

from tablet.generator import sheet_for_entry
from wire import parse_receipt

from .harness import World, now_ms, sign
from .pg_cluster import Cluster, pg_cluster  # noqa: F401 - fixture
from .test_gateway_multi_instance import database, start_instance

pytestmark = pytest.mark.postgres

BATCH = "application/vnd.sanaq.batch"
CODE = "AB-000001"  # the harness tablets' institution
ENTRIES = 6


def person(n: int) -> dict[str, str]:
    return {
        "entry_id": f"{CODE}/{n:05d}",
        "surname": "Серікова",
        "given_name": f"Айгүл{'а' * n}",
        "patronymic": "",
        "birth_date": f"1950-03-{n:02d}",
    }


async def post(session: aiohttp.ClientSession, url: str, envelope: bytes, key: object) -> dict[str, object]:
    target = f"{url}/v1/batches"
    async with session.post(target, data=envelope, headers=sign("POST", target, key, envelope, BATCH)) as r:  # type: ignore[arg-type]
        answer = await r.json(content_type=None)
        assert r.status == 200, answer
        return answer  # type: ignore[no-any-return]


async def test_duplicates_of_one_entry_from_three_roads_at_once_count_one_person(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    world = World.make(n_tablets=2, n_stations=1)
    station = world.stations["ST-01"]
    async with database(cluster) as dbname:
        dsn = cluster.dsn(dbname)
        shared = world.snapshot(version=1)
        one, two = await asyncio.gather(
            *(start_instance(world, tmp_path, f"gw-{i}", dsn, snapshot=shared) for i in (1, 2))
        )
        answers = []
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                for n in range(1, ENTRIES + 1):
                    a = world.batch(
                        "TAB-0001",
                        n,
                        [
                            sheet_for_entry(
                                person(n), institution=CODE, device_id="TAB-0001", seed=1, filled_at_ms=now_ms()
                            )
                        ],
                    )
                    b = world.batch(
                        "TAB-0002",
                        n,
                        [
                            sheet_for_entry(
                                person(n), institution=CODE, device_id="TAB-0002", seed=2, filled_at_ms=now_ms()
                            )
                        ],
                    )
                    answers.append(
                        await asyncio.gather(
                            post(session, one.url, a, world.tablets["TAB-0001"]),
                            post(session, two.url, a, station),  # the USB road carries A's batch
                            post(session, (two if n % 2 else one).url, b, world.tablets["TAB-0002"]),
                        )
                    )
        finally:
            for inst in (one, two):
                if inst.proc.returncode is None:
                    inst.proc.terminate()
                    await inst.proc.wait()
                inst.drain.cancel()
        async with await psycopg.AsyncConnection.connect(dsn) as conn:

            async def rows(sql: str) -> list[tuple[object, ...]]:
                cur = await conn.execute(sql)
                return [tuple(r) for r in await cur.fetchall()]

            batches = await rows("SELECT device_id, seq FROM batches ORDER BY 1, 2")
            sheets = await rows("SELECT count(*) FROM sheets")
            persons = await rows("SELECT entry_id, count(*) FROM persons GROUP BY 1 ORDER BY 1")
            cases = await rows(
                "SELECT r.entry_id, r.kind, fb.device_id, sb.device_id FROM review_cases r"
                " JOIN batches fb ON fb.id = r.first_batch_id JOIN batches sb ON sb.id = r.second_batch_id"
                " ORDER BY r.entry_id"
            )

    for online_a, usb_a, online_b in answers:
        assert online_a["receipt"] == usb_a["receipt"]  # one batch, one receipt, whichever road won
        assert [online_a["duplicate"], usb_a["duplicate"]].count(True) == 1
        assert online_b["duplicate"] is False
        for answer in (online_a, online_b):
            parse_receipt(base64.b64decode(str(answer["receipt"])), world.gateway_keys)
    assert batches == [(d, n) for d in ("TAB-0001", "TAB-0002") for n in range(1, ENTRIES + 1)]
    assert sheets == [(2 * ENTRIES,)]  # nothing lost: both sheets of every entry are stored
    assert persons == [(f"{CODE}/{n:05d}", 1) for n in range(1, ENTRIES + 1)]
    assert [(e, k) for e, k, *_ in cases] == [(f"{CODE}/{n:05d}", "same-entry") for n in range(1, ENTRIES + 1)]
    assert all({f, s} == {"TAB-0001", "TAB-0002"} for *_, f, s in cases)  # both provenances in every case
