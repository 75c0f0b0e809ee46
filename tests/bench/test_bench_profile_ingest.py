"""``bench.profile_ingest`` runs: its steps on real envelopes, and the real app in-process over TLS under the
real load generator, every batch stored once. Nothing is timed here beyond checking the figures exist."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench.profile_ingest import main, measure_server, measure_steps, top_functions
from bench.workload import build_workload, read_workload


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "workload.bin"
    build_workload(path, batches=24, devices=6, procs=1)
    return path


def test_steps_cover_the_handler(workload: Path) -> None:
    steps = measure_steps(read_workload(workload)[:3], min_s=0.005)
    assert set(steps) == {"request_verify", "envelope_verify", "sealed_box_only", "open", "sort", "receipt_sign",
                          "log_events"}
    assert all(us > 0 for us in steps.values())


def test_server_run_over_tls_stores_every_batch_and_profiles(workload: Path, tmp_path: Path) -> None:
    result, stats = measure_server(tmp_path, workload, concurrency=4, profile=True)
    assert (result["tls"], result["ok"], result["errors"]) == (True, 24, 0)
    assert result["server_cpu_us_per_batch"] > 0
    with sqlite3.connect(tmp_path / "census.db") as db:
        assert db.execute("SELECT count(*) FROM batches").fetchone() == (24,)
    assert stats is not None
    names = [row[0] for row in top_functions(stats, 400, "cumulative")]
    assert any(name.startswith("post_batch (gateway/web_ingest.py") for name in names)


def test_command_line_writes_its_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures.json"
    assert main(["--batches", "12", "--devices", "4", "--concurrency", "2", "--min-s", "0.005", "--plain",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "server (plain, 2 connections, asyncio): 12 batches stored, 0 errors" in printed
    assert '"steps_us_per_batch"' in out.read_text()
