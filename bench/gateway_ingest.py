"""Gateway ingest over the deployed path against its same-run baselines: ``python -m bench.gateway_ingest [--quick]``.

Over TLS as deployed (a census CA and gateway certificate made by ``keys.tls``;
the load generator trusts only that CA, as a tablet does) and then over plain
HTTP as a second row, for each concurrency (64, 256, 1024 keep-alive
connections) the same load generator process (``bench.loadgen``) with the same
pre-signed requests drives, one after the other:

1. the bare aiohttp server (``bench.http_ceiling``) started on the very
   ``gateway.toml`` the gateway gets: the same certificate and TLS context,
   the same ``AppRunner``/``TCPSite`` settings and body cap, a handler that only
   reads the body and answers; cycling over the workload;
2. the real ``sanaq-gateway serve`` process on a fresh SQLite store in its
   durable default (WAL, synchronous=FULL, group commit), each envelope sent once.

Then the gateway with ``server.workers`` = the usable CPUs (a supervisor and
its worker processes, docs/adr/0010-all-cores.md) over TLS at the first
concurrency, beside the one-process run there: throughput per core used with N
processes against one. Then one open-loop run over TLS at the first concurrency, paced at half the
closed-loop gateway throughput there, gives the latency of a gateway that is
busy but not saturated. The in-process crypto ceiling
(``bench.crypto_ceiling``) runs on the same envelopes; the report compares
the gateway with it times the cores the gateway used.

After every gateway run (all answers in) the gateway is killed with SIGKILL,
as a crash would, and its database is checked: the stored (device, seq) set must equal the set of 200 answers
(nothing acknowledged that was not committed, nothing committed twice), and a
sample of receipts is verified against the receipt key and the stored hash.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import usable_cpus
from wire import parse_receipt

from .crypto_ceiling import measure_crypto_ceiling
from .entry import bench_main
from .fleet import REPO, BenchFleet, Server, TlsFiles, device_name, start_gateway, start_server
from .profiling import start_profile, summarise_profile
from .workload import WorkItem, build_workload, read_workload

__all__ = ["IngestPlan", "check_store", "gateway_run", "run_gateway_ingest", "run_loadgen", "settle_s"]


@dataclass(frozen=True)
class IngestPlan:
    levels: tuple[int, ...] = (64, 256, 1024)  # over TLS; the first is where the targets are read
    plain_levels: tuple[int, ...] = (64, 256, 1024)
    devices: int = 2000
    batches: int = 12000
    duration_s: float = 12.0
    ceiling_duration_s: float = 6.0
    warmup_s: float = 2.0
    crypto_min_s: float = 1.0
    workers_pairs: int = 3  # alternated (workers = 1, workers = N) runs; the median pair is reported

    @classmethod
    def quick(cls) -> IngestPlan:
        return cls(levels=(64, 1024), plain_levels=(64,), batches=6000, duration_s=5.0, ceiling_duration_s=3.0,
                   warmup_s=1.0, crypto_min_s=0.3)


def run_loadgen(
    url: str,
    workload: Path,
    out: Path,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    rate: float = 0.0,
    cycle: bool = False,
    ca: Path | None = None,
) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        url,
        "--workload",
        str(workload),
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--out",
        str(out),
    ]
    if rate:
        argv += ["--rate", f"{rate:.1f}"]
    if cycle:
        argv.append("--cycle")
    if ca is not None:
        argv += ["--ca", str(ca)]
    subprocess.run(argv, check=True, timeout=duration + warmup + 300, cwd=REPO)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def check_store(db: Path, result: dict[str, Any], items: list[WorkItem], fleet: BenchFleet) -> dict[str, Any]:
    """Compare the killed gateway's database with the 200 answers; verify the sampled receipts.

    Only the bench's own rows (devices ``BT-*``) are compared, so a pre-filled store can be checked too.
    """
    by_key = {(i.device_index, i.seq): i for i in items}
    mine = "SELECT id FROM batches WHERE device_id LIKE 'BT-%'"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        stored = {
            (d, s): bytes(h)
            for d, s, h in conn.execute("SELECT device_id, seq, batch_hash FROM batches WHERE device_id LIKE 'BT-%'")
        }
        sheets = conn.execute(f"SELECT count(*) FROM sheets WHERE batch_id IN ({mine})").fetchone()[0]
        quarantined = conn.execute(f"SELECT count(*) FROM quarantine WHERE batch_id IN ({mine})").fetchone()[0]
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    acked = {(device_name(d), s) for d, s in result["ok_keys"]}
    receipts_ok = 0
    receipt_failures: list[str] = []
    for sample in result["samples"]:
        item = by_key[(sample["device_index"], sample["seq"])]
        try:
            answer = json.loads(sample["answer"])
            receipt = parse_receipt(base64.b64decode(answer["receipt"]), fleet.receipt_keys)
            expected = hashlib.sha256(item.envelope).digest()
            name = device_name(item.device_index)
            if (
                receipt.batch_hash != expected
                or receipt.device_id != name
                or receipt.seq != item.seq
                or stored.get((name, item.seq)) != expected
            ):
                raise ValueError("receipt does not match the envelope or the stored row")
            receipts_ok += 1
        except Exception as e:  # a bench records what failed instead of stopping
            receipt_failures.append(f"{sample['device_index']}/{sample['seq']}: {e}")
    return {
        "db_batches": len(stored),
        "db_sheets": sheets,
        "db_quarantined": quarantined,
        "db_journal_mode": journal,
        "acknowledged": len(acked),
        "db_equals_acknowledged": set(stored) == acked and len(acked) == result["ok_total"],
        "receipts_checked": receipts_ok + len(receipt_failures),
        "receipts_valid": receipts_ok,
        "receipt_failures": receipt_failures[:5],
    }


def settle_s(concurrency: int, rate: float, minimum: float) -> float:
    """Warm-up long enough for the first wave of ``concurrency`` requests to drain at ``rate`` (capped at 20 s).

    Every connection sends at once when the run starts; a server answering ``rate`` per second needs about
    ``concurrency / rate`` seconds before its answers come at the steady rate the window should measure.
    """
    if rate <= 0:
        return minimum
    return min(20.0, max(minimum, 1.5 * concurrency / rate))


def _summary(result: dict[str, Any], server: Server, sheets_per_batch: float) -> dict[str, Any]:
    start, end = result["window_wall"]
    return {
        "concurrency": result["concurrency"],
        "mode": result["mode"],
        "offered_rate": result["offered_rate"],
        "batches_per_s": result["ok_per_s_run"],
        "sheets_per_s": result["ok_per_s_run"] * sheets_per_batch,
        "batches_per_s_window": result["ok_per_s"],
        "run_s": result["run_s"],
        "latency_ms": result["latency_ms"],
        "requests": result["requests_total"],
        "errors": result["errors_total"],
        "failures": result["failures_total"],  # neither 200 nor a 503 + Retry-After still being waited out
        "shed": result["shed_total"],  # 503 + Retry-After answers (load shedding), waited out and sent again
        "statuses": result["statuses"],
        "error_samples": result["error_samples"][:3],
        "window_s": result["window_s"],
        "warmup_s": result["warmup_s"],
        "workload_exhausted": result["workload_exhausted"],
        "generator_cpu_share": result["generator_cpu_share"],
        "server_cpu_share": server.probe.cpu_share(start, end),
        "machine_cpu_share": server.probe.cpu_share(start, end, machine=True),
        "server_peak_rss_mb": server.probe.peak_rss_mb(),
    }


def gateway_run(
    fleet: BenchFleet,
    run_dir: Path,
    db: Path,
    workload: Path,
    items: list[WorkItem],
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    rate: float = 0.0,
    profile: bool = False,
    tls_files: TlsFiles | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """One load-generator run against a fresh gateway process on ``db``; the gateway is then killed.

    ``workers`` > 1: a supervisor and its worker processes; CPU is summed over them, RSS is the largest one.
    """
    server = start_gateway(fleet.write_gateway_config(run_dir, db, tls_files, workers=workers))
    spy = start_profile(server.proc.pid, duration, run_dir / "py-spy.txt") if profile else None
    try:
        result = run_loadgen(
            server.url,
            workload,
            run_dir / "loadgen.json",
            concurrency=concurrency,
            duration=duration,
            warmup=warmup,
            rate=rate,
            ca=tls_files.ca if tls_files else None,
        )
        summary = _summary(result, server, 10.0)
    finally:
        if spy is not None:
            spy.wait(60)
        code = server.stop(kill=True)
    summary["exit_code"] = code
    summary["store"] = check_store(db, result, items, fleet)
    if spy is not None and (run_dir / "py-spy.txt").exists():
        summary["profile"] = summarise_profile(run_dir / "py-spy.txt")
    return summary


def _gateway_run(
    fleet: BenchFleet,
    work: Path,
    name: str,
    workload: Path,
    items: list[WorkItem],
    plan: IngestPlan,
    concurrency: int,
    *,
    tls_files: TlsFiles | None,
    rate: float = 0.0,
    profile: bool = False,
    warmup: float | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    run_dir = work / name
    db = run_dir / "state" / "census.db"
    summary = gateway_run(
        fleet,
        run_dir,
        db,
        workload,
        items,
        concurrency=concurrency,
        duration=plan.duration_s,
        warmup=warmup or plan.warmup_s,
        rate=rate,
        profile=profile,
        tls_files=tls_files,
        workers=workers,
    )
    summary["workers"] = workers
    for leftover in db.parent.glob("census.db*"):
        leftover.unlink()
    return summary


def _ceiling_run(
    fleet: BenchFleet, work: Path, workload: Path, plan: IngestPlan, concurrency: int, tls_files: TlsFiles | None
) -> dict[str, Any]:
    """The bare aiohttp server on the gateway's own configuration (same TLS, runner, listener), same generator."""
    run_dir = work / f"ceiling-{'tls' if tls_files else 'plain'}-{concurrency}"
    config = fleet.write_gateway_config(run_dir, run_dir / "unused.db", tls_files)
    server = start_server([sys.executable, "-m", "bench.http_ceiling", "--config", str(config)])
    try:
        result = run_loadgen(
            server.url,
            workload,
            run_dir / "loadgen.json",
            concurrency=concurrency,
            duration=plan.ceiling_duration_s,
            warmup=plan.warmup_s,
            cycle=True,
            ca=tls_files.ca if tls_files else None,
        )
        return _summary(result, server, 10.0)
    finally:
        server.stop()


def _levels(
    fleet: BenchFleet,
    work: Path,
    workload: Path,
    items: list[WorkItem],
    plan: IngestPlan,
    crypto: dict[str, Any],
    transport: str,
    levels_wanted: tuple[int, ...],
    tls_files: TlsFiles | None,
    log: Any,
) -> list[dict[str, Any]]:
    levels: list[dict[str, Any]] = []
    for concurrency in levels_wanted:
        log(f"gateway_ingest: {transport}, {concurrency} connections: bare aiohttp")
        ceiling = _ceiling_run(fleet, work, workload, plan, concurrency, tls_files)
        log(f"gateway_ingest: {transport}, {concurrency} connections: gateway")
        gateway = _gateway_run(
            fleet,
            work,
            f"gw-{transport}-{concurrency}",
            workload,
            items,
            plan,
            concurrency,
            tls_files=tls_files,
            profile=tls_files is not None and concurrency == plan.levels[0],
            warmup=settle_s(concurrency, levels[-1]["gateway"]["batches_per_s"] if levels else 0, plan.warmup_s),
        )
        cores = gateway["server_cpu_share"]
        levels.append(
            {
                "concurrency": concurrency,
                "http_ceiling": ceiling,
                "gateway": gateway,
                "ratio_gateway_to_http_ceiling": gateway["batches_per_s"] / ceiling["batches_per_s"]
                if ceiling["batches_per_s"]
                else None,
                "ratio_gateway_to_crypto_ceiling": gateway["batches_per_s"] / crypto["crypto_batches_per_s_per_core"],
                "cores_used": cores,
                "ratio_gateway_to_crypto_ceiling_x_cores": gateway["batches_per_s"]
                / (crypto["crypto_batches_per_s_per_core"] * cores)
                if cores
                else None,
            }
        )
        log(
            f"  bare {ceiling['batches_per_s']:.0f}/s  gateway {gateway['batches_per_s']:.0f}/s "
            f"p99 {gateway['latency_ms']['p99']:.0f} ms  errors {gateway['errors']}  "
            f"rss {gateway['server_peak_rss_mb']:.0f} MB  cores {cores or 0:.2f}"
        )
    return levels


def run_gateway_ingest(plan: IngestPlan, work: Path, log: Any = print) -> dict[str, Any]:
    fleet = BenchFleet(tablets=plan.devices)
    workload = work / "workload.bin"
    log(f"gateway_ingest: building {plan.batches} envelopes for {plan.devices} devices")
    build = build_workload(workload, batches=plan.batches, devices=plan.devices)
    items = read_workload(workload)
    log(f"gateway_ingest: built in {build['build_s']:.1f} s; crypto ceiling")
    crypto = measure_crypto_ceiling(items[:200], min_s=plan.crypto_min_s)
    tls_files = TlsFiles.make(work / "tls")
    tls_levels = _levels(fleet, work, workload, items, plan, crypto, "tls", plan.levels, tls_files, log)
    plain_levels = _levels(fleet, work, workload, items, plan, crypto, "plain", plan.plain_levels, None, log)
    base = tls_levels[0]
    rate = max(1.0, 0.5 * base["gateway"]["batches_per_s"])
    log(f"gateway_ingest: TLS, open loop at {rate:.0f}/s over {base['concurrency']} connections")
    paced = _gateway_run(fleet, work, "gw-tls-paced", workload, items, plan, base["concurrency"], rate=rate,
                         tls_files=tls_files)
    workers = _workers_run(fleet, work, workload, items, plan, base, tls_files, log)
    return {
        "plan": plan.__dict__ | {"levels": list(plan.levels), "plain_levels": list(plan.plain_levels)},
        "workers": workers,
        "workload": build,
        "crypto_ceiling": crypto,
        "transports": {
            "tls": {
                "levels": tls_levels,
                "description": "HTTPS on 127.0.0.1 as deployed: a census CA and gateway certificate made by "
                "keys.tls (ECDSA P-256), the server context of keys.tls.server_ssl_context, a client trusting "
                "only the CA (keys.tls.client_ssl_context)",
            },
            "plain": {"levels": plain_levels, "description": "plain HTTP on 127.0.0.1 (server.plain_http = true)"},
        },
        "paced": paced,
        "gateway_processes": 1,
        "store": "SQLite WAL, synchronous=FULL, group commit (gateway defaults)",
    }


def _per_core(r: dict[str, Any]) -> float | None:
    share = r.get("server_cpu_share")
    return r["batches_per_s"] / share if share else None


def _workers_run(
    fleet: BenchFleet,
    work: Path,
    workload: Path,
    items: list[WorkItem],
    plan: IngestPlan,
    base: dict[str, Any],
    tls_files: TlsFiles,
    log: Any,
) -> dict[str, Any]:
    """``server.workers`` = the usable CPUs against one process, over TLS at the first concurrency.

    ``plan.workers_pairs`` pairs of runs, one process then N workers, alternated so that both sides of a pair
    see the same machine; the pair with the median per-core ratio is reported, with every pair's ratio.
    """
    n = usable_cpus()
    c = base["concurrency"]
    if n < 2:
        log("gateway_ingest: one usable CPU: no run with several workers")
        return {"n": n, "concurrency": c}
    warmup = settle_s(c, base["gateway"]["batches_per_s"], plan.warmup_s)
    pairs = []
    for k in range(plan.workers_pairs):
        log(f"gateway_ingest: TLS, {c} connections: workers = 1 then {n} (pair {k + 1}/{plan.workers_pairs})")
        one, many = (
            _gateway_run(fleet, work, f"gw-tls-{c}-workers-{w}-{k}", workload, items, plan, c,
                         tls_files=tls_files, workers=w, warmup=warmup)
            for w in (1, n)
        )
        per_one, per_many = _per_core(one), _per_core(many)
        log(
            f"  workers=1 {one['batches_per_s']:.0f}/s on {one['server_cpu_share'] or 0:.2f} cores; "
            f"workers={n} {many['batches_per_s']:.0f}/s on {many['server_cpu_share'] or 0:.2f} cores"
        )
        pairs.append((per_many / per_one if per_one and per_many else None, one, many))
    ratio, one, many = sorted(pairs, key=lambda p: -1.0 if p[0] is None else p[0])[len(pairs) // 2]
    return {
        "n": n,
        "concurrency": c,
        "one": one,
        "many": many,
        "batches_per_s_per_core_one": _per_core(one),
        "batches_per_s_per_core_many": _per_core(many),
        "per_core_ratio": ratio,
        "pair_ratios": [p[0] for p in pairs],
    }


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        "gateway_ingest", lambda quick: IngestPlan.quick() if quick else IngestPlan(), run_gateway_ingest, argv
    )


if __name__ == "__main__":
    sys.exit(main())
