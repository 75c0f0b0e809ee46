"""``PgStaffQueries`` folds batches in only past gaps proven final (ids commit out of order on PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway._schema_postgres import migrate
from gateway.staff.db import connect_staff_db
from gateway.staff.db_postgres import PgStaffDb
from gateway.staff.errors import StaffStoreError
from gateway.staff.queries_postgres import PgStaffQueries, settled_prefix

from .pg_cluster import Cluster, create_database, drop_database, pg_cluster  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres

NOW = 1_790_000_000_000


@pytest.mark.parametrize(
    ("after", "ids", "final_upto", "n"),
    [
        (0, [1, 2, 3], 0, 3),  # no gap
        (0, [2, 3], 0, 0),  # a gap before the first row, not proven
        (0, [2, 3], 3, 2),  # proven final
        (0, [1, 3, 4], 1, 1),  # the gap at 2 lies above what is proven
        (5, [6, 8, 10], 8, 2),  # the gap at 7 is final, the one at 9 not
        (0, [], 0, 0),
    ],
)
def test_settled_prefix(after: int, ids: list[int], final_upto: int, n: int) -> None:
    assert settled_prefix(after, ids, final_upto) == n


def _insert_batch(conn: psycopg.Connection[Any], seq: int) -> int:
    row = conn.execute(
        "INSERT INTO batches (device_id, seq, batch_hash, envelope, schema, sealed_at_ms, request_created_s,"
        " received_at_ms, road, signer_key_id, sheets_accepted, sheets_quarantined, receipt)"
        " VALUES ('TAB-0001', %s, %s, '', 's', 1, 1, 1, 'online', '', 0, 0, '') RETURNING id",
        (seq, seq.to_bytes(32, "big")),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
async def dsn(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    name = await create_database(cluster)
    await migrate(cluster.dsn(name))
    yield cluster.dsn(name)
    await drop_database(cluster, name)


async def test_a_batch_committed_late_with_a_smaller_id_is_not_stepped_over(dsn: str) -> None:
    queries = PgStaffQueries(dsn)
    await queries.open()
    slow = psycopg.Connection.connect(dsn)  # a transaction of its own, committed last
    fast = psycopg.Connection.connect(dsn, autocommit=True)
    try:
        first = _insert_batch(slow, 1)  # drawn first, not committed yet
        second = _insert_batch(fast, 2)
        assert second > first
        assert await queries.batches_after(0, 100) == []  # id 1 may still come
        assert await queries.batches_after(0, 100) == []
        slow.commit()
        assert [b.id for b in await queries.batches_after(0, 100)] == [first, second]

        with pytest.raises(psycopg.errors.UniqueViolation):  # a refused duplicate: its id is a permanent gap
            _insert_batch(fast, 2)
        idle = psycopg.Connection.connect(dsn)  # an unrelated writer in progress: the gap is not proven yet
        idle.execute("CREATE TEMP TABLE t (x int)")
        third = _insert_batch(fast, 3)
        assert third > second + 1
        assert await queries.batches_after(second, 100) == []
        other = psycopg.Connection.connect(dsn)  # another writer, begun after that read: it cannot fill the gap
        other.execute("CREATE TEMP TABLE u (x int)")
        idle.rollback()
        idle.close()
        assert [b.id for b in await queries.batches_after(second, 100)] == [third]  # proven by the earlier read
        other.close()
    finally:
        slow.close()
        fast.close()
        await queries.close()


async def test_the_staff_tables_must_exist_and_commits_be_durable(request: pytest.FixtureRequest) -> None:
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    name = await create_database(cluster)
    try:
        db = PgStaffDb(cluster.dsn(name))
        with pytest.raises(StaffStoreError, match="apply census migration 5"):
            await db.open()
        await migrate(cluster.dsn(name))
        async with await psycopg.AsyncConnection.connect(cluster.dsn(), autocommit=True) as admin:
            await admin.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
        with pytest.raises(StaffStoreError, match="not durable"):
            await db.open()
        async with await psycopg.AsyncConnection.connect(cluster.dsn(), autocommit=True) as admin:
            await admin.execute(f"ALTER DATABASE {name} RESET synchronous_commit")
        await db.open()
        try:
            count = await db.run(lambda c: c.execute("SELECT count(*) FROM users WHERE username LIKE 'a%'").fetchone())
            assert count == (0,)
        finally:
            await db.close()
    finally:
        await drop_database(cluster, name)


async def test_the_staff_tables_have_the_same_columns_in_the_same_order_on_both_engines(
    dsn: str, tmp_path: Path
) -> None:
    """staff.db migrations 1-5 and census migration 5 on PostgreSQL describe one schema (positional INSERTs rely
    on the order); a later staff.db migration must come with a PostgreSQL one."""
    conn = connect_staff_db(tmp_path / "staff.db", now_ms=1)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'schema_migrations' ORDER BY name"
        )]
        sqlite_columns = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    finally:
        conn.close()
    assert len(tables) == 14
    with psycopg.Connection.connect(dsn) as pg:
        pg_columns = {
            t: [r[0] for r in pg.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                (t,),
            )]
            for t in tables
        }
    assert pg_columns == sqlite_columns


def _codes_story(run: Any) -> list[Any]:
    """Lists with a household, codes minted, one revoked through a household member, a resident added, the list
    re-imported, and what the web service would learn: the staff code paths whose SQL is translated on PostgreSQL
    (``json_each``, ``LIKE``, ``RETURNING``, ``FILTER``). Returns what each step left, hashes left out."""
    from gateway.staff.accounts import add_user, list_users
    from gateway.staff.codes import code_changes, code_statuses, mint_codes, register_resident, revoke_code
    from gateway.staff.lists import import_list, load_entries, parse_list_csv

    kinds = ("childrens_home", "hospital")
    csv_text = (
        "institution_code,entry_id,list_date,surname,given_name,birth_date,household\n"
        "CD-000001,1,2026-06-01,Ким,Ли,1980-02-02,\n"
        "CD-000001,2,2026-06-01,Ким,Ана,1981-03-03,H1\n"
        "CD-000001,3,2026-06-01,Ким,Бек,2010-04-04,H1\n"
    ).encode()
    user = run(lambda c: add_user(c, username="admin", role="admin", password="a long enough password 1",
                                  now_ms=NOW + 1))
    parsed = parse_list_csv(csv_text, max_bytes=1 << 20, max_rows=100)
    run(lambda c: import_list(c, parsed, source_name="l.csv", user_id=user.id, now_ms=NOW + 2))
    minted, _ = run(lambda c: mint_codes(c, bytes(32), user, "CD-000001", institution_kind=kinds[0], worker_id="W-1",
                                         kinds=kinds, now_ms=NOW + 3, render=lambda code, slips: b"%PDF"))
    run(lambda c: revoke_code(c, user, "CD-000001/00003", now_ms=NOW + 4))  # the household's code, through a member
    added, _ = run(lambda c: register_resident(
        c, bytes(32), user, "CD-000001",
        {"surname": "Ли", "given_name": "Юн", "patronymic": "", "birth_date": "1999-09-09"},
        institution_kind=kinds[0], worker_id="W-1", kinds=kinds, now_ms=NOW + 5, render=lambda code, slips: b"%PDF",
    ))
    run(lambda c: import_list(c, parsed, source_name="l.csv", user_id=user.id, now_ms=NOW + 6))  # additions survive
    changes, latest = run(lambda c: code_changes(c, 0, 100))
    return [
        [(s.entry_id, s.name) for s in minted.slips],
        [(s.entry_id, s.status, s.added) for s in run(lambda c: code_statuses(c, "CD-000001"))],
        added.entry_id,
        [e.entry_id for e in run(lambda c: load_entries(c, "CD-000001"))],
        [(ch.version, ch.entry_id, ch.status, ch.members) for ch in changes],
        latest,
        [(u.username, u.role) for u in run(list_users)],
    ]


async def test_the_access_code_paths_give_the_same_answers_on_both_engines(dsn: str, tmp_path: Path) -> None:
    from gateway.staff.db_postgres import connect_pg_staff, run_in_transaction

    lite = connect_staff_db(tmp_path / "staff.db", now_ms=NOW + 1)
    try:
        on_sqlite = _codes_story(lambda fn: fn(lite))
    finally:
        lite.close()
    pg = connect_pg_staff(dsn)
    try:
        on_postgres = _codes_story(lambda fn: run_in_transaction(pg, fn))
    finally:
        pg.close()
    assert on_postgres == on_sqlite
    assert on_sqlite[1] == [
        ("CD-000001/00001", "active", False),
        ("CD-000001/00002", "revoked", False),
        ("CD-000001/00003", "revoked", False),
        ("CD-000001/90001", "active", True),
    ]


async def test_a_postgresql_error_reaches_messages_without_the_row_values_it_quotes(dsn: str) -> None:
    """PostgreSQL's DETAIL quotes the offending row ("Key (x)=(Жұмабаева) already exists"): never passed on."""
    db = PgStaffDb(dsn)
    await db.open()
    try:
        insert = "INSERT INTO users (username, role, password_hash, created_at_ms, password_changed_at_ms)" \
                 " VALUES ('жұмабаева', 'viewer', 'h', 1, 1)"
        await db.run(lambda c: c.execute(insert))
        with pytest.raises(StaffStoreError) as failed:
            await db.run(lambda c: c.execute(insert))
    finally:
        await db.close()
    assert "users_username_key" in str(failed.value) and "23505" in str(failed.value)
    assert "жұмабаева" not in str(failed.value) and "DETAIL" not in str(failed.value)
