"""Gateway throughput and p99 as the store grows: ``python -m bench.scale_curve [--quick]``.

One SQLite store is grown step by step (empty, 1 M, 5 M stored sheets; quick
mode 100 k and 500 k) by ``bench.prefill``. At each step:

* the real gateway process is started on it and driven closed-loop at 64
  connections by the load generator (throughput, p50/p95/p99, errors), then
  killed and checked as in ``bench.gateway_ingest``; 64 stays below the
  gateway's default 128 ingest slots (ADR 0014), so a step measures the store's
  effect and not load shedding (at 256 most requests were answered 503);
* the store alone, in-process: ``SqliteStore.find_batch`` + ``ingest`` of
  pre-built items at 64 concurrent callers, which isolates the store's cost
  from the gateway's CPU work (the gateway today is CPU-bound, which would
  hide a store that slowed down); the median of ``store_repeats`` runs.

The gateway's CPU time per batch is reported beside its throughput: on a
shared machine the throughput of a CPU-bound server follows the CPU it is
given, its cost per batch does not.

The bench's own rows are deleted after each step so every step sends the
same workload into a store of the stated size.

Then the same curve on PostgreSQL (``pg_sizes``: empty, 1 M, 5 M stored sheets;
quick mode 50 k and 200 k), on the test suite's throwaway cluster
(``bench.instances.PgCluster``): one database pre-filled server-side with rows
shaped like the SQLite pre-fill (``INSERT … SELECT`` over ``generate_series``
from a pool of real envelopes and sheet bodies), the real gateway process on it
(checked after SIGKILL: stored = acknowledged), and the store alone
(``PostgresStore.find_batch`` + ``ingest``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from gateway.store import IngestItem, NonceUse, Stored
from gateway.store_postgres import PostgresStore
from gateway.store_sqlite import SqliteStore

from .entry import bench_main
from .fleet import BenchFleet
from .gateway_ingest import gateway_run, settle_s
from .instances import PgCluster, instances_run
from .loadgen import percentiles
from .prefill import prefill, sheet_pool
from .workload import WorkItem, build_workload, read_workload

__all__ = ["ScalePlan", "run_scale_curve"]


@dataclass(frozen=True)
class ScalePlan:
    sizes: tuple[int, ...] = (0, 1_000_000, 5_000_000)
    concurrency: int = 64  # below the gateway's 128 ingest slots (see the module docstring)
    devices: int = 2000
    batches: int = 10000
    duration_s: float = 10.0
    warmup_s: float = 2.0
    store_items: int = 4000
    store_repeats: int = 3
    pg_sizes: tuple[int, ...] = (0, 1_000_000, 5_000_000)  # the same curve on PostgreSQL; () skips it

    @classmethod
    def quick(cls) -> ScalePlan:
        return cls(sizes=(0, 100_000, 500_000), batches=4000, duration_s=4.0, warmup_s=1.0, store_items=1500,
                   pg_sizes=(0, 50_000, 200_000))


def _store_items(pool: list[tuple[bytes, Any]], n: int) -> list[IngestItem]:
    now = time.time_ns() // 1_000_000
    items = []
    for k in range(n):
        envelope, sheets = pool[k % len(pool)]
        items.append(
            IngestItem(
                device_id=f"SO-{k % 2000:05d}",
                seq=k // 2000 + 1,
                batch_hash=hashlib.sha256(b"store/%d" % k).digest(),
                envelope=envelope,
                sealed_at_ms=now,
                request_created_s=now // 1000,
                received_at_ms=now,
                road="online",
                signer_key_id=bytes(16),
                schema="census-sheet/1",
                receipt=bytes(310),
                sheets=sheets,
                quarantined=(),
                nonce=NonceUse(bytes(16), f"store-nonce-{k:012d}", now + 600_000),
            )
        )
    return items


async def _store_only(db: Path | str, items: list[IngestItem], concurrency: int) -> dict[str, Any]:
    """What the gateway asks of the store per batch (lookup, then durable ingest), without the gateway.

    ``db``: a SQLite file, or a PostgreSQL URL.
    """
    store: SqliteStore | PostgresStore = SqliteStore(db) if isinstance(db, Path) else PostgresStore(db)
    await store.open()
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(item: IngestItem) -> None:
        async with gate:
            started = time.perf_counter()
            if await store.find_batch(item.device_id, item.seq) is not None:
                raise RuntimeError("store-only item already stored")
            outcome = await store.ingest(item)
            if not isinstance(outcome, Stored):
                raise RuntimeError(f"store-only ingest: {outcome}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in items))
    elapsed = time.perf_counter() - started
    groups = list(store.group_sizes)
    await store.close()
    return {
        "batches_per_s": len(items) / elapsed,
        "latency_ms": percentiles(latencies),
        "mean_group": sum(groups) / len(groups) if groups else 0.0,
        "commits": len(groups),
    }


def _forget_bench_rows(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        ids = "SELECT id FROM batches WHERE device_id LIKE 'BT-%' OR device_id LIKE 'SO-%'"
        conn.execute(f"DELETE FROM sheets WHERE batch_id IN ({ids})")
        conn.execute(f"DELETE FROM quarantine WHERE batch_id IN ({ids})")
        conn.execute("DELETE FROM batches WHERE device_id LIKE 'BT-%' OR device_id LIKE 'SO-%'")
        conn.execute("DELETE FROM nonces")
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def run_scale_curve(plan: ScalePlan, work: Path, log: Any = print) -> dict[str, Any]:
    fleet = BenchFleet(tablets=plan.devices)
    workload = work / "workload.bin"
    log(f"scale_curve: building {plan.batches} envelopes")
    build_workload(workload, batches=plan.batches, devices=plan.devices)
    items: list[WorkItem] = read_workload(workload)
    pool = sheet_pool(items, 200)
    run_dir = work / "gw"
    db = run_dir / "state" / "census.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    stored_sheets = 0
    steps = []
    try:
        for size in plan.sizes:
            fill: dict[str, Any] = {"sheets": 0, "seconds": 0.0}
            if size > stored_sheets:
                log(f"scale_curve: pre-filling to {size:,} sheets")
                fill = prefill(db, size - stored_sheets, items, first=stored_sheets // 10, log=log)
                stored_sheets = size
            log(f"scale_curve: {size:,} sheets stored: gateway at {plan.concurrency} connections")
            warmup = settle_s(plan.concurrency, steps[0]["gateway"]["batches_per_s"] if steps else 100.0, plan.warmup_s)
            gateway = gateway_run(
                fleet,
                run_dir,
                db,
                workload,
                items,
                concurrency=plan.concurrency,
                duration=plan.duration_s,
                warmup=warmup,
            )
            _forget_bench_rows(db)
            repeats = []
            for _ in range(plan.store_repeats):
                repeats.append(asyncio.run(_store_only(db, _store_items(pool, plan.store_items), plan.concurrency)))
                gc.collect()  # SqliteStore.close() leaves its reader threads' connections to the garbage collector
                _forget_bench_rows(db)
            store = sorted(repeats, key=lambda r: r["batches_per_s"])[len(repeats) // 2]
            store["repeats_batches_per_s"] = [r["batches_per_s"] for r in repeats]
            steps.append(
                {
                    "stored_sheets": size,
                    "db_bytes": db.stat().st_size,
                    "prefill": fill,
                    "gateway": gateway,
                    "store_only": store,
                }
            )
            log(
                f"  gateway {gateway['batches_per_s']:.0f}/s p99 {gateway['latency_ms']['p99']:.0f} ms "
                f"errors {gateway['errors']}; store alone {store['batches_per_s']:.0f}/s "
                f"p99 {store['latency_ms']['p99']:.0f} ms"
            )
    finally:
        for leftover in db.parent.glob("census.db*"):
            leftover.unlink()
    first, last = steps[0], steps[-1]
    postgres = _postgres_curve(plan, work, fleet, workload, items, pool, log) if plan.pg_sizes else None
    return {
        "plan": plan.__dict__ | {"sizes": list(plan.sizes), "pg_sizes": list(plan.pg_sizes)},
        "steps": steps,
        **({"postgres": postgres} if postgres else {}),
        "gateway_throughput_ratio_last_to_empty": last["gateway"]["batches_per_s"] / first["gateway"]["batches_per_s"],
        "gateway_p99_ratio_last_to_empty": last["gateway"]["latency_ms"]["p99"] / first["gateway"]["latency_ms"]["p99"],
        "store_throughput_ratio_last_to_empty": last["store_only"]["batches_per_s"]
        / first["store_only"]["batches_per_s"],
    }


# ---- the same curve on PostgreSQL ------------------------------------------------------------------------------

_BENCH_ROWS = "SELECT id FROM batches WHERE device_id LIKE 'BT-%' OR device_id LIKE 'SO-%'"
_PG_CHUNK = 50_000  # batches per pre-fill statement


def _pg_prefill(dsn: str, sheets: int, pool: list[tuple[bytes, Any]], *, first: int, log: Any) -> dict[str, Any]:
    """Add ``sheets`` stored sheets (batches of 10, pre-fill batches ``first ..``) server-side, like ``prefill``."""
    started = time.perf_counter()
    per_batch = len(pool[0][1])
    batches = sheets // per_batch
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")  # this session only: the gateway's own stay durable
        conn.execute("CREATE TEMP TABLE pool_b (p INTEGER PRIMARY KEY, envelope BYTEA NOT NULL)")
        conn.execute("CREATE TEMP TABLE pool_s (p INTEGER, idx INTEGER, inst TEXT, entry TEXT, body TEXT)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO pool_b VALUES (%s, %s)", [(p, env) for p, (env, _) in enumerate(pool)])
            cur.executemany(
                "INSERT INTO pool_s VALUES (%s, %s, %s, %s, %s)",
                [(p, sh.index, sh.institution_code, sh.respondent_list_entry, sh.body_json)
                 for p, (_, accepted) in enumerate(pool) for sh in accepted],
            )
        row = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM batches").fetchone()
        base_id = int(row[0]) if row else 1
        params: dict[str, Any] = {"first": first, "base": base_id, "n": len(pool), "per": per_batch,
                                  "ms": time.time_ns() // 1_000_000 - 86_400_000, "kid": bytes(16),
                                  "receipt": bytes(310)}
        for lo in range(first, first + batches, _PG_CHUNK):
            params |= {"lo": lo, "hi": min(lo + _PG_CHUNK, first + batches)}
            with conn.transaction():
                conn.execute(
                    "INSERT INTO batches (id, device_id, seq, batch_hash, envelope, schema, sealed_at_ms,"
                    " request_created_s, received_at_ms, road, signer_key_id, sheets_accepted, sheets_quarantined,"
                    " receipt) OVERRIDING SYSTEM VALUE"
                    " SELECT %(base)s + (k - %(first)s), 'PF-' || lpad((k %% 30000)::text, 5, '0'), k / 30000 + 1,"
                    " sha256(convert_to('prefill/' || k, 'UTF8')), b.envelope, 'census-sheet/1', %(ms)s + k,"
                    " (%(ms)s + k) / 1000, %(ms)s + k, 'online', %(kid)s, %(per)s, 0, %(receipt)s"
                    " FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS k"
                    " JOIN pool_b b ON b.p = k %% %(n)s",
                    params,
                )
                conn.execute(
                    "INSERT INTO sheets (batch_id, idx, sheet_id, institution_code, respondent_list_entry, body)"
                    " SELECT %(base)s + (k - %(first)s), s.idx, md5('prefill/' || k || '/' || s.idx)::uuid::text,"
                    " s.inst, s.entry, s.body"
                    " FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS k"
                    " JOIN pool_s s ON s.p = k %% %(n)s",
                    params,
                )
            done = params["hi"] - first
            if done % 100_000 < _PG_CHUNK:
                log(f"  prefill (PostgreSQL): {done * per_batch:,} sheets, {time.perf_counter() - started:.0f} s")
        conn.execute("SELECT setval(pg_get_serial_sequence('batches', 'id'), (SELECT max(id) FROM batches))")
        conn.execute("ANALYZE batches")
        conn.execute("ANALYZE sheets")
        conn.execute("CHECKPOINT")  # write the pre-fill out now, not while the next measurement runs
    return {"sheets": batches * per_batch, "batches": batches, "seconds": time.perf_counter() - started}


def _pg_forget_bench_rows(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(f"DELETE FROM review_cases WHERE first_batch_id IN ({_BENCH_ROWS})"
                     f" OR second_batch_id IN ({_BENCH_ROWS})")
        for table in ("persons", "person_keys", "sheets", "quarantine"):
            conn.execute(f"DELETE FROM {table} WHERE batch_id IN ({_BENCH_ROWS})")
        conn.execute("DELETE FROM batches WHERE device_id LIKE 'BT-%' OR device_id LIKE 'SO-%'")
        conn.execute("DELETE FROM nonces")


def _pg_bytes(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def _postgres_curve(
    plan: ScalePlan, work: Path, fleet: BenchFleet, workload: Path, items: list[WorkItem],
    pool: list[tuple[bytes, Any]], log: Any,
) -> dict[str, Any]:
    pg = PgCluster()
    try:
        dsn = pg.create("bench_scale")
        asyncio.run(_pg_schema(dsn))
        stored_sheets = 0
        steps: list[dict[str, Any]] = []
        for size in plan.pg_sizes:
            fill: dict[str, Any] = {"sheets": 0, "seconds": 0.0}
            if size > stored_sheets:
                log(f"scale_curve: PostgreSQL: pre-filling to {size:,} sheets")
                fill = _pg_prefill(dsn, size - stored_sheets, pool, first=stored_sheets // 10, log=log)
                stored_sheets = size
            log(f"scale_curve: PostgreSQL, {size:,} sheets stored: gateway at {plan.concurrency} connections")
            last_rate = steps[0]["gateway"]["batches_per_s"] if steps else 100.0
            run = instances_run(fleet, work / f"pg-{size}", dsn, items, 1, concurrency=plan.concurrency,
                                duration=plan.duration_s, warmup=settle_s(plan.concurrency, last_rate, plan.warmup_s),
                                tls_files=None)
            gateway = run["per_instance"][0] | {"store": run["store"], "exit_code": run["exit_codes"][0]}
            _pg_forget_bench_rows(dsn)
            repeats = []
            for _ in range(plan.store_repeats):
                repeats.append(asyncio.run(_store_only(dsn, _store_items(pool, plan.store_items), plan.concurrency)))
                _pg_forget_bench_rows(dsn)
            store = sorted(repeats, key=lambda r: r["batches_per_s"])[len(repeats) // 2]
            store["repeats_batches_per_s"] = [r["batches_per_s"] for r in repeats]
            steps.append({"stored_sheets": size, "db_bytes": _pg_bytes(dsn), "prefill": fill, "gateway": gateway,
                          "store_only": store})
            log(
                f"  gateway {gateway['batches_per_s']:.0f}/s p99 {gateway['latency_ms']['p99']:.0f} ms "
                f"errors {gateway['errors']} stored=acknowledged {run['store']['db_equals_acknowledged']}; "
                f"store alone {store['batches_per_s']:.0f}/s p99 {store['latency_ms']['p99']:.0f} ms"
            )
        settings = pg.settings()
    finally:
        pg.close()
    first, last = steps[0], steps[-1]
    return {
        "settings": settings,
        "steps": steps,
        "gateway_throughput_ratio_last_to_empty": last["gateway"]["batches_per_s"] / first["gateway"]["batches_per_s"],
        "gateway_p99_ratio_last_to_empty": last["gateway"]["latency_ms"]["p99"] / first["gateway"]["latency_ms"]["p99"],
        "store_throughput_ratio_last_to_empty": last["store_only"]["batches_per_s"]
        / first["store_only"]["batches_per_s"],
    }


async def _pg_schema(dsn: str) -> None:
    store = PostgresStore(dsn)  # opening applies the gateway's migrations
    await store.open()
    await store.close()


def main(argv: list[str] | None = None) -> int:
    return bench_main("scale_curve", lambda quick: ScalePlan.quick() if quick else ScalePlan(), run_scale_curve, argv)


if __name__ == "__main__":
    sys.exit(main())
