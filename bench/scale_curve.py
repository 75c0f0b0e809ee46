"""Gateway throughput and p99 as the store grows: ``python -m bench.scale_curve [--quick]``.

One SQLite store is grown step by step (empty, 1 M, 5 M stored sheets; quick
mode 100 k and 500 k) by ``bench.prefill``. At each step:

* the real gateway process is started on it and driven closed-loop at 256
  connections by the load generator (throughput, p50/p95/p99, errors), then
  killed and checked as in ``bench.gateway_ingest``;
* the store alone, in-process: ``SqliteStore.find_batch`` + ``ingest`` of
  pre-built items at 256 concurrent callers, which isolates the store's cost
  from the gateway's CPU work (the gateway today is CPU-bound, which would
  hide a store that slowed down); the median of ``store_repeats`` runs.

The gateway's CPU time per batch is reported beside its throughput: on a
shared machine the throughput of a CPU-bound server follows the CPU it is
given, its cost per batch does not.

The bench's own rows are deleted after each step so every step sends the
same workload into a store of the stated size.
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

from gateway.store import IngestItem, NonceUse, Stored
from gateway.store_sqlite import SqliteStore

from .entry import bench_main
from .fleet import BenchFleet
from .gateway_ingest import gateway_run, settle_s
from .loadgen import percentiles
from .prefill import prefill, sheet_pool
from .workload import WorkItem, build_workload, read_workload

__all__ = ["ScalePlan", "run_scale_curve"]


@dataclass(frozen=True)
class ScalePlan:
    sizes: tuple[int, ...] = (0, 1_000_000, 5_000_000)
    concurrency: int = 256
    devices: int = 2000
    batches: int = 10000
    duration_s: float = 10.0
    warmup_s: float = 2.0
    store_items: int = 4000
    store_repeats: int = 3

    @classmethod
    def quick(cls) -> ScalePlan:
        return cls(sizes=(0, 100_000, 500_000), batches=4000, duration_s=4.0, warmup_s=1.0, store_items=1500)


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


async def _store_only(db: Path, items: list[IngestItem], concurrency: int) -> dict[str, Any]:
    """What the gateway asks of the store per batch (lookup, then durable ingest), without the gateway."""
    store = SqliteStore(db)
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
    return {
        "plan": plan.__dict__ | {"sizes": list(plan.sizes)},
        "steps": steps,
        "gateway_throughput_ratio_last_to_empty": last["gateway"]["batches_per_s"] / first["gateway"]["batches_per_s"],
        "gateway_p99_ratio_last_to_empty": last["gateway"]["latency_ms"]["p99"] / first["gateway"]["latency_ms"]["p99"],
        "store_throughput_ratio_last_to_empty": last["store_only"]["batches_per_s"]
        / first["store_only"]["batches_per_s"],
    }


def main(argv: list[str] | None = None) -> int:
    return bench_main("scale_curve", lambda quick: ScalePlan.quick() if quick else ScalePlan(), run_scale_curve, argv)


if __name__ == "__main__":
    sys.exit(main())
