"""The benchmark machinery runs: a tiny workload through the real load generator process and the crypto ceiling.

Nothing is timed here; the tests check that the bench scripts still work with the
code they measure (envelopes verify, the generator reports every answer, the
report renders).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.crypto_ceiling import measure_crypto_ceiling
from bench.fleet import start_server
from bench.gateway_ingest import run_loadgen, settle_s
from bench.loadgen import percentiles
from bench.report import render
from bench.workload import build_workload, read_workload


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "workload.bin"
    facts = build_workload(path, batches=12, devices=5, procs=1)
    assert facts["batches"] == 12 and facts["mean_envelope_bytes"] > 1000
    return path


def test_workload_is_seq_major_and_envelopes_verify(workload: Path) -> None:
    items = read_workload(workload)
    assert [(i.device_index, i.seq) for i in items[:6]] == [(0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (0, 2)]
    result = measure_crypto_ceiling(items[:3], min_s=0.01)
    assert result["sheets_per_batch"] == 10
    assert result["quarantined_in_first_50"] == 0
    assert result["crypto_batches_per_s_per_core"] > 0


def test_loadgen_against_the_http_ceiling_counts_every_answer(workload: Path, tmp_path: Path) -> None:
    server = start_server([sys.executable, "-m", "bench.http_ceiling"])
    try:
        result = run_loadgen(server.url, workload, tmp_path / "out.json", concurrency=4, duration=0.5, warmup=0.1,
                             cycle=True)
    finally:
        assert server.stop() == 0
    assert result["errors_total"] == 0
    assert result["ok_total"] == result["requests_total"] > 12
    assert result["latency_ms"]["p50"] > 0


@pytest.mark.parametrize(
    ("values", "p50", "p99"),
    [([], 0.0, 0.0), ([0.001], 1.0, 1.0), ([i / 1000 for i in range(1, 101)], 51.0, 100.0)],
)
def test_percentiles(values: list[float], p50: float, p99: float) -> None:
    got = percentiles(values)
    assert got["p50"] == pytest.approx(p50)
    assert got["p99"] == pytest.approx(p99)


@pytest.mark.parametrize(("concurrency", "rate", "expected"), [(64, 0, 2.0), (1024, 100, 15.36), (1024, 10, 20.0)])
def test_settle_time(concurrency: int, rate: float, expected: float) -> None:
    assert settle_s(concurrency, rate, 2.0) == pytest.approx(expected)


def test_report_renders_without_results() -> None:
    page = render({})
    assert page.startswith("# Benchmarks") and "| result | mode | source |" in page
