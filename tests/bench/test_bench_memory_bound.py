"""The memory bound docs/operations.md states for one gateway process at 1,024 TLS connections.

A real ``sanaq-gateway serve`` process (TLS with a census CA, SQLite in its
durable default) and the bench's load generator in its own process: 1,024
keep-alive TLS connections, each posting one batch of ten household sheets
from its own tablet, all at once. The generator waits out ``503`` +
``Retry-After`` as a tablet does. The gateway's peak resident memory (VmHWM,
read by the kernel, not timed) must stay within the figure the operations
guide promises, and every batch must be stored.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.fleet import REPO, BenchFleet, TlsFiles, start_gateway
from bench.gateway_ingest import run_loadgen
from bench.workload import build_workload

CONNECTIONS = 1024


def documented_bound_mb() -> float:
    """The number in docs/operations.md's "Memory of one gateway process" section."""
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    found = re.search(r"peak resident memory at 1,024 TLS connections: at most \*\*(\d+) MB\*\*", text)
    assert found is not None, "docs/operations.md no longer states the per-process memory bound"
    return float(found.group(1))


def test_one_process_at_1024_tls_connections_stays_within_the_documented_memory(tmp_path: Path) -> None:
    bound = documented_bound_mb()
    workload = tmp_path / "workload.bin"
    build_workload(workload, batches=CONNECTIONS, devices=CONNECTIONS, procs=1)
    tls_files = TlsFiles.make(tmp_path / "tls")
    config = BenchFleet(tablets=CONNECTIONS).write_gateway_config(tmp_path / "gw", tmp_path / "census.db", tls_files)
    server = start_gateway(config)
    try:
        result = run_loadgen(server.url, workload, tmp_path / "loadgen.json", concurrency=CONNECTIONS,
                             duration=120.0, warmup=0.0, ca=tls_files.ca)
        peak_mb = server.probe.peak_rss_mb()
    finally:
        assert server.stop() == 0
    assert result["tls"] is True and result["concurrency"] == CONNECTIONS
    assert result["ok_total"] == CONNECTIONS and result["failures_total"] == 0, result["error_samples"]
    assert peak_mb <= bound, f"peak RSS {peak_mb:.0f} MB > {bound:.0f} MB stated in docs/operations.md"
