"""N gateway instances on one PostgreSQL database under load: ``python -m bench.instances [--quick]``.

The multi-instance shape of a national deployment (docs/operations.md, "National deployment topology") on
one machine: a throwaway PostgreSQL cluster (the test suite's, ``tests/gateway/pg_cluster.py``: initdb on a
temp directory, Unix socket only, ``fsync`` and ``synchronous_commit`` on) and, for each N in the plan, a
fresh database with N real ``sanaq-gateway serve`` processes over TLS (one process each: ``[server]
workers = 1``, so a row measures instances, not workers).

The workload (``bench.workload``, the envelopes ``bench.gateway_ingest`` sends) is split by device into N
disjoint parts and each instance gets its own ``bench.loadgen`` process, all started together, closed loop,
``concurrency / N`` connections each (the same total at every N). Reported per instance: batches/s, p50/p99,
errors, the cores it used; and the total (the sum of the instances' rates over their concurrent runs).

After each N the instances are SIGKILLed and the database checked as ``bench.gateway_ingest`` checks
SQLite: the stored (device, seq) set equals the union of the 200 answers, and sampled receipts verify
against the receipt key and the stored hash. On this 2-core machine the instances, the load generators and
PostgreSQL share the cores; ``other_cpu`` and the cores per instance say how far that bounds a row.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.gateway.pg_cluster import start_cluster, stop_cluster  # the suite's recipe (Debian's postgresql)
from wire import parse_receipt

from .entry import bench_main
from .fleet import BenchFleet, Server, TlsFiles, device_name, start_gateway
from .gateway_ingest import run_loadgen
from .workload import WorkItem, build_workload, read_workload

__all__ = ["InstancesPlan", "PgCluster", "check_pg_store", "pg_gateway_config", "run_instances", "write_workload"]

_MAGIC = b"SNQBENCH1\n"  # bench.workload's file format
_REC = struct.Struct(">III")


@dataclass(frozen=True)
class InstancesPlan:
    instances: tuple[int, ...] = (1, 2, 4)
    concurrency: int = 64  # total connections, split over the instances
    devices: int = 2000
    batches: int = 24000  # each envelope is sent once: enough for 4 instances for duration_s
    duration_s: float = 12.0
    warmup_s: float = 2.0

    @classmethod
    def quick(cls) -> InstancesPlan:
        return cls(instances=(1, 2), devices=400, batches=3000, duration_s=4.0, warmup_s=1.0)


class PgCluster:
    """The test suite's throwaway PostgreSQL cluster (``tests/gateway/pg_cluster.py``), outside pytest."""

    def __init__(self) -> None:
        self.cluster = start_cluster()

    def create(self, name: str) -> str:
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {name}")
        return self.cluster.dsn(name)

    def settings(self) -> dict[str, str]:
        names = ("server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_level")
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]

    def close(self) -> None:
        stop_cluster(self.cluster)


def write_workload(path: Path, items: list[WorkItem]) -> None:
    """A workload file (``bench.workload``'s format) holding ``items`` in their order."""
    with path.open("wb") as f:
        f.write(_MAGIC)
        for item in items:
            f.write(_REC.pack(item.device_index, item.seq, len(item.envelope)) + item.envelope)


def pg_gateway_config(fleet: BenchFleet, directory: Path, dsn: str, name: str, tls_files: TlsFiles | None) -> Path:
    """``bench.fleet``'s gateway.toml with the PostgreSQL database, an instance id and one process."""
    config = fleet.write_gateway_config(directory, directory / "unused.db", tls_files)
    text = config.read_text().replace(f'database = "sqlite:///{directory / "unused.db"}"', f'database = "{dsn}"')
    text = text.replace("[server]\n", f'[server]\ninstance_id = "{name}"\n', 1)  # fleet's config has workers = 1
    config.write_text(text + "[staff]\nenabled = false\n")
    return config


def check_pg_store(dsn: str, results: list[dict[str, Any]], items: list[WorkItem], fleet: BenchFleet) -> dict[str, Any]:
    """The killed instances' database against the union of their 200 answers; sampled receipts verified."""
    by_key = {(i.device_index, i.seq): i for i in items}
    with psycopg.connect(dsn) as conn:
        stored = {
            (d, s): bytes(h)
            for d, s, h in conn.execute("SELECT device_id, seq, batch_hash FROM batches WHERE device_id LIKE 'BT-%'")
        }
        sheets = conn.execute(
            "SELECT count(*) FROM sheets WHERE batch_id IN (SELECT id FROM batches WHERE device_id LIKE 'BT-%')"
        ).fetchone()[0]  # type: ignore[index]
    acked = {(device_name(d), s) for r in results for d, s in r["ok_keys"]}
    ok_total = sum(r["ok_total"] for r in results)
    receipts_ok, failures = 0, []
    for sample in (s for r in results for s in r["samples"]):
        item = by_key[(sample["device_index"], sample["seq"])]
        try:
            receipt = parse_receipt(base64.b64decode(json.loads(sample["answer"])["receipt"]), fleet.receipt_keys)
            expected = hashlib.sha256(item.envelope).digest()
            name = device_name(item.device_index)
            if receipt.batch_hash != expected or (receipt.device_id, receipt.seq) != (name, item.seq) or stored.get(
                (name, item.seq)
            ) != expected:
                raise ValueError("receipt does not match the envelope or the stored row")
            receipts_ok += 1
        except Exception as e:  # a bench records what failed instead of stopping
            failures.append(f"{sample['device_index']}/{sample['seq']}: {e}")
    return {
        "db_batches": len(stored),
        "db_sheets": sheets,
        "acknowledged": len(acked),
        "db_equals_acknowledged": set(stored) == acked and len(acked) == ok_total,
        "receipts_checked": receipts_ok + len(failures),
        "receipts_valid": receipts_ok,
        "receipt_failures": failures[:5],
    }


def _instance_summary(result: dict[str, Any], server: Server) -> dict[str, Any]:
    start, end = result["window_wall"]
    return {
        "concurrency": result["concurrency"],
        "batches_per_s": result["ok_per_s_run"],
        "batches_per_s_window": result["ok_per_s"],
        "run_s": result["run_s"],
        "latency_ms": result["latency_ms"],
        "requests": result["requests_total"],
        "errors": result["errors_total"],
        "statuses": result["statuses"],
        "error_samples": result["error_samples"][:3],
        "workload_exhausted": result["workload_exhausted"],
        "generator_cpu_share": result["generator_cpu_share"],
        "server_cpu_share": server.probe.cpu_share(start, end),
        "machine_cpu_share": server.probe.cpu_share(start, end, machine=True),
        "server_peak_rss_mb": server.probe.peak_rss_mb(),
    }


def instances_run(
    fleet: BenchFleet,
    work: Path,
    dsn: str,
    items: list[WorkItem],
    n: int,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    tls_files: TlsFiles | None,
) -> dict[str, Any]:
    """N gateways on ``dsn``, N load generators at once (devices split by index), then SIGKILL and the check."""
    parts = [[i for i in items if i.device_index % n == k] for k in range(n)]
    servers: list[Server] = []
    try:
        for k in range(n):
            run_dir = work / f"gw{k + 1}"
            run_dir.mkdir(parents=True, exist_ok=True)
            write_workload(run_dir / "workload.bin", parts[k])
            servers.append(start_gateway(pg_gateway_config(fleet, run_dir, dsn, f"gw-{k + 1}", tls_files)))
        per = max(1, concurrency // n)
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            futures = [
                pool.submit(
                    run_loadgen, servers[k].url, work / f"gw{k + 1}" / "workload.bin",
                    work / f"gw{k + 1}" / "loadgen.json", concurrency=per, duration=duration, warmup=warmup,
                    ca=tls_files.ca if tls_files else None,
                )
                for k in range(n)
            ]
            results = [f.result() for f in futures]
        summaries = [_instance_summary(r, s) for r, s in zip(results, servers, strict=True)]
    finally:
        codes = [s.stop(kill=True) for s in servers]
    store = check_pg_store(dsn, results, items, fleet)
    lat = [s["latency_ms"]["p99"] for s in summaries]
    machine = [s["machine_cpu_share"] for s in summaries if s["machine_cpu_share"] is not None]
    return {
        "instances": n,
        "per_instance": summaries,
        "total_batches_per_s": sum(s["batches_per_s"] for s in summaries),
        "total_sheets_per_s": sum(s["batches_per_s"] for s in summaries) * 10.0,
        "worst_p99_ms": max(lat),
        "errors": sum(s["errors"] for s in summaries),
        "gateway_cores": sum(s["server_cpu_share"] or 0.0 for s in summaries),
        "generator_cores": sum(s["generator_cpu_share"] or 0.0 for s in summaries),
        "machine_cores": max(machine) if machine else None,
        "exit_codes": codes,
        "store": store,
    }


def run_instances(plan: InstancesPlan, work: Path, log: Any = print) -> dict[str, Any]:
    fleet = BenchFleet(tablets=plan.devices)
    workload = work / "workload.bin"
    log(f"instances: building {plan.batches} envelopes for {plan.devices} devices")
    build = build_workload(workload, batches=plan.batches, devices=plan.devices)
    items = read_workload(workload)
    tls_files = TlsFiles.make(work / "tls")
    pg = PgCluster()
    try:
        settings = pg.settings()
        runs = []
        for n in plan.instances:
            log(f"instances: {n} gateway process(es) on one PostgreSQL database, {plan.concurrency} connections")
            dsn = pg.create(f"bench_instances_{n}")
            run = instances_run(fleet, work / f"n{n}", dsn, items, n, concurrency=plan.concurrency,
                                duration=plan.duration_s, warmup=plan.warmup_s, tls_files=tls_files)
            runs.append(run)
            rates = ", ".join(f"{s['batches_per_s']:.0f}" for s in run["per_instance"])
            log(f"  total {run['total_batches_per_s']:.0f}/s (per instance {rates}); worst p99 "
                f"{run['worst_p99_ms']:.0f} ms; errors {run['errors']}; stored = acknowledged: "
                f"{run['store']['db_equals_acknowledged']}")
    finally:
        pg.close()
    base = runs[0]["total_batches_per_s"] / runs[0]["instances"] if runs else 0.0
    for run in runs:
        run["per_instance_vs_one"] = (run["total_batches_per_s"] / run["instances"]) / base if base else None
    return {
        "plan": plan.__dict__ | {"instances": list(plan.instances)},
        "workload": build,
        "postgres": settings,
        "transport": "HTTPS on 127.0.0.1 (census CA pinned by the load generator), one gateway process per instance",
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    return bench_main("instances", lambda quick: InstancesPlan.quick() if quick else InstancesPlan(), run_instances,
                      argv)


if __name__ == "__main__":
    sys.exit(main())
