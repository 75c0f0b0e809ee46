"""Bytes per stored sheet: the ``sheets`` table as an ordinary rowid table against ``WITHOUT ROWID``.

``python -m bench.store_bytes [--quick]``. Two SQLite census stores are made
by the gateway's own schema (``SqliteStore.open``) and pre-filled by
``bench.prefill`` with the same rows (real envelopes and canonical sheet
bodies from ``tablet.generator``): one as the store is now (census store
migration 4: ``sheets`` and ``quarantine`` ordinary rowid tables), one with
those two tables rebuilt ``WITHOUT ROWID``, the layout of stores created
before 2026-11-26. The size of each table and index comes from SQLite's
``dbstat`` (pages times page size); bytes per sheet are those of ``sheets``
with its indexes, and of the whole file.

Then migration 4 itself runs on the ``WITHOUT ROWID`` store (as a gateway start
would) and is timed: what an operator's first start after the update costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway._schema_sqlite import ROWID_TABLES
from gateway.store_sqlite import SqliteStore

from .entry import bench_main
from .prefill import prefill
from .workload import build_workload, read_workload

__all__ = ["StoreBytesPlan", "main", "run_store_bytes"]


@dataclass(frozen=True)
class StoreBytesPlan:
    sheets: int = 200_000
    pool: int = 200

    @classmethod
    def quick(cls) -> StoreBytesPlan:
        return cls(sheets=20_000)


def _open_close(db: Path) -> None:
    async def run() -> None:
        store = SqliteStore(db)
        await store.open()
        await store.close()

    asyncio.run(run())


def _as_without_rowid(db: Path) -> None:
    """Rebuild ``sheets`` and ``quarantine`` (empty) ``WITHOUT ROWID``, as migration 1 made them before 2026-11-26."""
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        for table in ROWID_TABLES:
            ddl = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (table,)).fetchone()[0]
            indexes = [r[0] for r in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,))]
            conn.execute(f"DROP TABLE {table}")
            conn.execute(ddl + " WITHOUT ROWID")
            for sql in indexes:
                conn.execute(sql)
        conn.execute("COMMIT")


def _sizes(db: Path) -> dict[str, int]:
    """Bytes of each table and index (dbstat: pages of each B-tree, overflow pages included)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {name: int(size) for name, size in conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY name")}


def _sheets_objects(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return ["sheets", *(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sheets' ORDER BY name"))]


def _without_rowid(db: Path, table: str) -> bool:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT wr FROM pragma_table_list WHERE name = ? AND schema = 'main'",
                            (table,)).fetchone() == (1,)


def _measure(db: Path, sheets: int) -> dict[str, Any]:
    sizes = _sizes(db)
    objects = _sheets_objects(db)
    table_bytes = sum(sizes.get(name, 0) for name in objects)
    return {
        "without_rowid": _without_rowid(db, "sheets"),
        "objects": {name: sizes.get(name, 0) for name in objects},
        "sheets_table_and_indexes_bytes": table_bytes,
        "sheets_bytes_per_sheet": table_bytes / sheets,
        "db_bytes": db.stat().st_size,
        "db_bytes_per_sheet": db.stat().st_size / sheets,
        "all_objects": sizes,
    }


def run_store_bytes(plan: StoreBytesPlan, work: Path, log: Any = print) -> dict[str, Any]:
    workload = work / "workload.bin"
    batches = plan.pool
    log(f"store_bytes: building {batches} envelopes for the row pool")
    build = build_workload(workload, batches=batches, devices=batches)
    items = read_workload(workload)
    layouts: dict[str, Any] = {}
    dbs = {}
    for name in ("rowid", "without_rowid"):
        db = work / name / "census.db"
        db.parent.mkdir(parents=True)
        _open_close(db)
        if name == "without_rowid":
            _as_without_rowid(db)
        log(f"store_bytes: pre-filling {plan.sheets:,} sheets, {name}")
        fill = prefill(db, plan.sheets, items, pool_size=plan.pool, log=log)
        layouts[name] = {"prefill_s": fill["seconds"], **_measure(db, fill["sheets"])}
        dbs[name] = db
    if layouts["rowid"]["without_rowid"] or not layouts["without_rowid"]["without_rowid"]:
        raise RuntimeError("store_bytes: the two stores do not have the layouts this benchmark compares")

    old = dbs["without_rowid"]
    with contextlib.closing(sqlite3.connect(old)) as conn, conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = 4")  # as in a store made before it existed
    log("store_bytes: migration 4 on the WITHOUT ROWID store")
    started = time.perf_counter()
    _open_close(old)
    seconds = time.perf_counter() - started
    after = _measure(old, plan.sheets)
    with contextlib.closing(sqlite3.connect(old, isolation_level=None)) as conn:
        conn.execute("VACUUM")
    migration = {
        "seconds": seconds,
        "sheets_per_s": plan.sheets / seconds if seconds else None,
        "now_without_rowid": after["without_rowid"],
        "sheets_bytes_per_sheet_after": after["sheets_bytes_per_sheet"],
        "db_bytes_after": after["db_bytes"],
        "db_bytes_after_vacuum": old.stat().st_size,
    }
    rowid, worow = layouts["rowid"], layouts["without_rowid"]
    log(f"store_bytes: sheets table + indexes {worow['sheets_bytes_per_sheet']:,.0f} -> "
        f"{rowid['sheets_bytes_per_sheet']:,.0f} bytes per sheet; migration {seconds:.1f} s")
    return {
        "plan": plan.__dict__,
        "workload": build,
        "layouts": layouts,
        "ratio_sheets_rowid_to_without_rowid": rowid["sheets_bytes_per_sheet"] / worow["sheets_bytes_per_sheet"],
        "ratio_db_rowid_to_without_rowid": rowid["db_bytes"] / worow["db_bytes"],
        "migration": migration,
        "sqlite_version": sqlite3.sqlite_version,
    }


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        "store_bytes", lambda quick: StoreBytesPlan.quick() if quick else StoreBytesPlan(), run_store_bytes, argv
    )


if __name__ == "__main__":
    sys.exit(main())
