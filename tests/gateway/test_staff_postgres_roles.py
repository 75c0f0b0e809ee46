"""The dashboard runs as the least-privilege gateway role of docs/operations.md, which still cannot erase acts,
decisions, accounts or the audit trail, nor touch the notification triggers (census migration 5, ADR 0012)."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import psycopg
import pytest

from gateway._schema_postgres import migrate
from tablet.generator import generate_sheets

from .harness import World, post_batch
from .pg_cluster import Cluster, pg_cluster  # noqa: F401 - fixture
from .staff_browser import list_csv, signed_in, start_staff_gateway, summary, upload

pytestmark = pytest.mark.postgres


async def test_the_dashboard_works_as_the_least_privilege_role_which_cannot_erase_staff_records(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    suffix = os.urandom(4).hex()
    owner, app, db = f"own_{suffix}", f"gw_{suffix}", f"lp_{suffix}"
    async with await psycopg.AsyncConnection.connect(cluster.dsn(), autocommit=True) as admin:
        await admin.execute(f"CREATE ROLE {owner} LOGIN")
        await admin.execute(f"CREATE ROLE {app} LOGIN")
        await admin.execute(f"CREATE DATABASE {db} OWNER {owner}")
        try:
            async with await psycopg.AsyncConnection.connect(cluster.dsn(db), autocommit=True) as setup:
                for statement in (
                    f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
                    f"GRANT CONNECT ON DATABASE {db} TO {app}",
                    f"CREATE SCHEMA census AUTHORIZATION {owner}",
                    f"GRANT USAGE ON SCHEMA census TO {app}",
                    f"ALTER ROLE {owner} IN DATABASE {db} SET search_path = census",
                    f"ALTER ROLE {app} IN DATABASE {db} SET search_path = census",
                ):
                    await setup.execute(statement)
            assert 5 in await migrate(cluster.dsn(db, user=owner), grant_to=app)
            world = World.make(n_tablets=1, n_stations=0)
            gw = await start_staff_gateway(world, tmp_path, database=cluster.dsn(db, user=app))
            try:
                async with signed_in(gw, "admin") as client:
                    status, _ = await upload(client, list_csv("SI-000010", range(1, 4)))
                    assert status == 200
                    async with aiohttp.ClientSession() as s:
                        envelope = world.batch("TAB-0001", 1, generate_sheets(3, 2, device_id="TAB-0001"))
                        assert (await post_batch(s, gw, envelope, world.tablets["TAB-0001"]))[0] == 200
                    assert (await summary(client))["sheets"] == 2
                    assert (await client.post("/staff/logout", {"csrf": client.csrf}))[0] == 303
            finally:
                await gw.stop()
            assert gw.staff_rows("SELECT action FROM audit ORDER BY id") == [
                ("login",), ("lists.imported",), ("logout",)
            ]  # fmt: skip
            async with await psycopg.AsyncConnection.connect(cluster.dsn(db, user=app), autocommit=True) as conn:
                # what PgStaffQueries needs to prove a gap final, and the staff write lock, as this role
                await conn.execute("SELECT pg_xact_status(pg_current_xact_id())")
                await conn.execute("SELECT array(SELECT pg_snapshot_xip(pg_current_snapshot()))::text[]")
                await conn.execute("SELECT pg_advisory_xact_lock(1)")
                for forbidden in (
                    "DELETE FROM audit",
                    "UPDATE audit SET action = 'x'",
                    "DELETE FROM acts",
                    "UPDATE acts SET staff_name = 'x'",
                    "DELETE FROM review_decisions",
                    "UPDATE list_match_decisions SET decision = 'different'",
                    "DELETE FROM users",
                    "DELETE FROM respondent_lists",
                    "DELETE FROM access_codes",
                    "DROP TRIGGER batches_notify ON batches",
                    "DROP FUNCTION sanaq_census_changed()",
                    "ALTER TABLE sessions ADD COLUMN x int",
                ):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        await conn.execute(forbidden)
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            await admin.execute(f"DROP ROLE IF EXISTS {app}")
            await admin.execute(f"DROP ROLE IF EXISTS {owner}")
