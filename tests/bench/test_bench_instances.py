"""``bench.instances`` works with the code it measures: a tiny run of two real gateway processes on one
PostgreSQL database, each with its own load generator, checked against the database; its report section.
Nothing is timed here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from bench.fleet import BenchFleet, TlsFiles
from bench.instances import instances_run, write_workload
from bench.prefill import sheet_pool
from bench.report_instances import instances_section
from bench.scale_curve import _pg_forget_bench_rows, _pg_prefill, _pg_schema, _store_items, _store_only
from bench.workload import build_workload, read_workload
from gateway.config import load_config

from ..gateway.pg_cluster import Cluster, create_database, drop_database, pg_cluster  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres


def test_a_split_workload_reads_back_as_written(tmp_path: Path) -> None:
    build_workload(tmp_path / "all.bin", batches=10, devices=4, procs=1)
    items = read_workload(tmp_path / "all.bin")
    part = [i for i in items if i.device_index % 2 == 1]
    write_workload(tmp_path / "part.bin", part)
    assert read_workload(tmp_path / "part.bin") == part and {i.device_index for i in part} == {1, 3}


def test_two_instances_on_one_database_store_exactly_what_they_acknowledged(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    name = asyncio.run(create_database(cluster))
    try:
        dsn = cluster.dsn(name)
        fleet = BenchFleet(tablets=6)
        build_workload(tmp_path / "all.bin", batches=24, devices=6, procs=1)
        items = read_workload(tmp_path / "all.bin")
        run = instances_run(fleet, tmp_path / "run", dsn, items, 2, concurrency=4, duration=1.0, warmup=0.2,
                            tls_files=TlsFiles.make(tmp_path / "tls"))
        config = load_config(tmp_path / "run" / "gw2" / "gateway.toml")
        assert config.database == dsn and config.server.instance_id == "gw-2" and not config.staff.enabled
    finally:
        asyncio.run(drop_database(cluster, name))
    assert run["instances"] == 2 and len(run["per_instance"]) == 2
    assert all(s["errors"] == 0 and s["batches_per_s"] > 0 for s in run["per_instance"])
    store = run["store"]
    assert store["db_equals_acknowledged"] and store["db_batches"] == store["acknowledged"] > 0
    assert store["receipts_valid"] == store["receipts_checked"] > 0
    assert store["db_sheets"] == 10 * store["db_batches"]
    result = {"plan": {"concurrency": 4, "duration_s": 1.0}, "postgres": {"server_version": "15"}, "runs": [run],
              "provenance": {"machine": {"nproc": 2}}}
    page = "\n".join(instances_section(result))
    assert "| 2 |" in page and "| yes |" in page


def test_the_postgres_prefill_makes_rows_the_gateway_store_takes_after(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """bench.scale_curve's PostgreSQL pre-fill: the stated number of sheets, real bodies, and a store that
    ingests afterwards (the identity sequence is moved past the pre-filled ids); the bench rows go again."""
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    name = asyncio.run(create_database(cluster))
    dsn = cluster.dsn(name)
    try:
        build_workload(tmp_path / "all.bin", batches=20, devices=4, procs=1)
        items = read_workload(tmp_path / "all.bin")
        pool = sheet_pool(items, 5)
        asyncio.run(_pg_schema(dsn))
        fill = _pg_prefill(dsn, 300, pool, first=0, log=lambda _line: None)
        more = _pg_prefill(dsn, 200, pool, first=30, log=lambda _line: None)
        assert (fill["sheets"], more["sheets"]) == (300, 200)
        with psycopg.connect(dsn) as conn:
            counts = conn.execute("SELECT count(*), count(DISTINCT (device_id, seq)) FROM batches").fetchone()
            bodies = conn.execute("SELECT count(*), count(DISTINCT sheet_id) FROM sheets").fetchone()
            assert counts == (50, 50) and bodies == (500, 500)
        outcome = asyncio.run(_store_only(dsn, _store_items(pool, 20), 4))
        assert outcome["batches_per_s"] > 0
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM batches WHERE device_id LIKE 'SO-%'").fetchone() == (20,)
        _pg_forget_bench_rows(dsn)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM batches").fetchone() == (50,)
            assert conn.execute("SELECT count(*) FROM sheets").fetchone() == (500,)
    finally:
        asyncio.run(drop_database(cluster, name))
