"""The deployed-path benchmark runs end to end, tiny: TLS with a census CA, the bare server on the gateway's config.

Nothing is timed; the test checks that every run answered, that TLS really
was used (a client without the CA is refused), that the gateway stored what
it acknowledged, and that the report's targets come out of the result.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import aiohttp
import pytest

from bench.fleet import BenchFleet, TlsFiles, start_server
from bench.gateway_ingest import IngestPlan, run_gateway_ingest, run_loadgen
from bench.report import render
from bench.workload import build_workload


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TlsFiles]:
    work = tmp_path_factory.mktemp("deployed")
    build_workload(work / "workload.bin", batches=16, devices=8, procs=1)
    return work, TlsFiles.make(work / "tls")


async def test_the_bare_server_serves_the_gateways_tls_and_only_to_clients_of_the_census_ca(tiny) -> None:
    work, tls_files = tiny
    config = BenchFleet(tablets=8).write_gateway_config(work / "bare", work / "bare" / "unused.db", tls_files)
    server = start_server([sys.executable, "-m", "bench.http_ceiling", "--config", str(config)])
    try:
        assert server.url.startswith("https://127.0.0.1:")
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with aiohttp.ClientSession() as s, s.post(server.url + "/v1/batches", data=b"x"):
                pass
        result = run_loadgen(server.url, work / "workload.bin", work / "bare.json", concurrency=4, duration=0.5,
                             warmup=0.1, cycle=True, ca=tls_files.ca)
    finally:
        assert server.stop() == 0
    assert result["tls"] is True and result["errors_total"] == 0 and result["ok_total"] > 16
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    assert context.get_ca_certs()[0]["subject"] == ((("commonName", "Sanaq Census CA"),),)


def test_a_tiny_deployed_path_run_fills_every_row_and_target(tmp_path: Path) -> None:
    plan = IngestPlan(levels=(4,), plain_levels=(4,), devices=40, batches=160, duration_s=0.6,
                      ceiling_duration_s=0.4, warmup_s=0.1, crypto_min_s=0.05, workers_pairs=2)
    result = run_gateway_ingest(plan, tmp_path, log=lambda *_: None)
    for transport in ("tls", "plain"):
        (level,) = result["transports"][transport]["levels"]
        assert level["gateway"]["errors"] == 0 and level["http_ceiling"]["errors"] == 0
        assert level["gateway"]["store"]["db_equals_acknowledged"] is True
        assert level["gateway"]["store"]["receipts_valid"] == level["gateway"]["store"]["receipts_checked"]
    assert result["paced"]["errors"] == 0 and result["paced"]["store"]["db_equals_acknowledged"] is True
    page = render({"gateway_ingest": {**result, "mode": "quick"}})
    assert "## 1. Gateway ingest, over TLS as deployed and over plain HTTP" in page
    assert "| gateway >= 0.5 x bare aiohttp, TLS, 4 connections" in page
    assert "| gateway >= 0.5 x (crypto ceiling per core x cores used), TLS, 4 connections" in page
    assert "| tls | 4 | sanaq-gateway |" in page and "| plain | 4 | bare aiohttp |" in page
    assert "What TLS costs" in page
    workers = result["workers"]
    if workers["n"] >= 2:  # server.workers = the usable CPUs beside workers = 1, at the first TLS level
        assert workers["many"]["errors"] == 0 and workers["many"]["store"]["db_equals_acknowledged"] is True
        assert workers["many"]["workers"] == workers["n"] and workers["one"]["workers"] == 1
        assert len(workers["pair_ratios"]) == 2 and workers["per_core_ratio"] in workers["pair_ratios"]
        assert "the median of 2 alternated pairs" in page
        assert (f"| throughput per core no lower with N processes than with one (TLS, 4 connections, "
                f"workers = {workers['n']} vs 1) | ") in page
        assert f"| tls | 4 | sanaq-gateway, workers = {workers['n']} |" in page
    else:
        assert "| throughput per core no lower with N processes than with one | not measured" in page
