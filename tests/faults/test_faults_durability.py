"""The real process refuses to start on a store that may acknowledge what it has not made durable.

The store classes' own checks are tested in ``tests/gateway``; here the whole
``python -m gateway serve`` must exit 1 with one clear line, before it listens.

SQLite: the store opens every connection with ``journal_mode=WAL`` and
``synchronous=FULL`` itself, so no database *file* can bring another
synchronous level (it is a per-connection setting, not stored in the file),
and a file left in rollback-journal mode (a restored backup) is switched to
WAL at start -- tested below. What can be presented is a database where WAL
is impossible: ``sqlite::memory:`` (journal mode ``memory``), refused.

PostgreSQL: ``synchronous_commit=off`` reaching the gateway's session from
the database, the role or the connection URL, and ``fsync=off`` on the
server, each make the process refuse.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from tests.gateway.harness import World
from tests.gateway.pg_cluster import Cluster, create_database, drop_database, pg_cluster  # noqa: F401 - fixture

from .bed import GatewayBed, StartRefused


async def refused_start(bed: GatewayBed) -> StartRefused:
    try:
        gp = await bed.start()
    except StartRefused as e:
        return e
    await gp.terminate()
    raise AssertionError("the gateway started on a non-durable store")


async def test_sqlite_in_memory_database_is_refused_at_start(tmp_path: Path, fault_ledger, make_bed) -> None:
    bed = make_bed(World.make(), tmp_path, database="sqlite::memory:")
    refused = await refused_start(bed)
    fault_ledger.add(inputs=1, faults=1, crashes=0 if refused.returncode == 1 else 1)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "sanaq-gateway: cannot start: SQLite store not durable: journal_mode=memory synchronous=2"
    ]


async def test_sqlite_file_in_rollback_journal_mode_is_switched_to_wal(tmp_path: Path, fault_ledger, make_bed) -> None:
    bed = make_bed(World.make(), tmp_path)
    gp = await bed.start()
    assert await gp.terminate() == 0
    with contextlib.closing(sqlite3.connect(bed.db_path)) as conn:  # an operator restores it via DELETE mode
        assert conn.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    gp = await bed.start()
    assert await gp.terminate() == 0
    with contextlib.closing(sqlite3.connect(bed.db_path)) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()
    fault_ledger.add(inputs=1, faults=1)
    assert mode == ("wal",)


# ---- PostgreSQL -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_db(cluster: Cluster) -> AsyncIterator[str]:
    name = await create_database(cluster)
    try:
        yield name
    finally:
        await drop_database(cluster, name)


async def admin(cluster: Cluster, *statements: str) -> None:
    async with await psycopg.AsyncConnection.connect(cluster.dsn(), autocommit=True) as conn:
        for sql in statements:
            await conn.execute(sql)  # type: ignore[arg-type]


PG_CASES = [
    "database-synchronous-commit-off",
    "role-synchronous-commit-off",
    "url-synchronous-commit-off",
    "server-fsync-off",
]


@pytest.mark.postgres
@pytest.mark.parametrize("where", PG_CASES)
async def test_postgres_not_durable_is_refused_at_start(
    where: str,
    pg_cluster: Cluster,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    fault_ledger,
    make_bed,
) -> None:
    async with fresh_db(pg_cluster) as dbname:
        user = "postgres"
        extra: dict[str, str] = {}
        undo: list[str] = []
        if where == "database-synchronous-commit-off":
            await admin(pg_cluster, f"ALTER DATABASE {dbname} SET synchronous_commit = off")
        elif where == "role-synchronous-commit-off":
            user = f"gw_{uuid.uuid4().hex[:8]}"
            await admin(
                pg_cluster,
                f"CREATE ROLE {user} LOGIN",
                f"ALTER ROLE {user} SET synchronous_commit = off",
                f"GRANT ALL ON DATABASE {dbname} TO {user}",
            )
            undo = [f"DROP OWNED BY {user}", f"DROP ROLE {user}"]
        elif where == "url-synchronous-commit-off":
            extra["options"] = "-c synchronous_commit=off"
        else:
            await admin(pg_cluster, "ALTER SYSTEM SET fsync = off", "SELECT pg_reload_conf()")
            undo = ["ALTER SYSTEM RESET fsync", "SELECT pg_reload_conf()"]
        try:
            dsn = pg_cluster.dsn(dbname, user=user, **extra)
            # the staff dashboard runs on SQLite only for now; the store check is what is tested here
            bed = make_bed(
                World.make(), tmp_path, database=dsn.replace('"', quote('"')), extra_toml="[staff]\nenabled = false"
            )
            refused = await refused_start(bed)
        finally:
            if undo:
                await _undo(pg_cluster, dbname, undo)
    fault_ledger.add(inputs=1, faults=1, crashes=0 if refused.returncode == 1 else 1)
    assert refused.returncode == 1, refused.stderr
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sanaq-gateway: cannot start: PostgreSQL store not durable: fsync=")
    wanted = "fsync=off" if where == "server-fsync-off" else "synchronous_commit=off"
    assert wanted in lines[0]


async def _undo(cluster: Cluster, dbname: str, statements: list[str]) -> None:
    async with await psycopg.AsyncConnection.connect(cluster.dsn(dbname), autocommit=True) as conn:
        for sql in statements:
            await conn.execute(sql)  # type: ignore[arg-type]
