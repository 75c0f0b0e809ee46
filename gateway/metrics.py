"""Prometheus metrics of one gateway app, in their own registry (no global collectors).

Under a supervisor (``server.workers`` > 1) every worker runs with
``PROMETHEUS_MULTIPROC_DIR`` set to the supervisor's private directory, so
prometheus_client keeps each value in a per-process file there and
``exposition`` sums the files of all workers: ``/metrics`` on any worker
reports the whole gateway. Counters and histograms of a worker that died stay
in the sums (totals never go back); gauges count live workers only
(``inflight`` and ``commit_queue_depth`` summed, ``registry_version`` the
lowest any live worker holds). In that mode the commit queue depth is sampled
once a second (``sample_loop``), not read at scrape time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self._queue_depth = queue_depth
        self._multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "sanaq_gateway_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.refusals = Counter("sanaq_gateway_refusals", "Refused requests by problem code", ["code"], registry=r)
        self.batches = Counter("sanaq_gateway_batches_stored", "Batches durably stored", ["road"], registry=r)
        self.duplicates = Counter(
            "sanaq_gateway_batches_duplicate", "Batches received again (same receipt)", registry=r
        )
        self.sheets = Counter("sanaq_gateway_sheets_stored", "Valid sheets stored", registry=r)
        self.quarantined = Counter("sanaq_gateway_sheets_quarantined", "Sheets quarantined", registry=r)
        self.security_events = Counter("sanaq_gateway_security_events", "Security events by kind", ["kind"], registry=r)
        self.commit_latency = Histogram(
            "sanaq_gateway_commit_seconds",
            "Time from handing a batch to the store to its durable commit",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.queue_depth = Gauge(
            "sanaq_gateway_commit_queue_depth", "Jobs waiting for the store writer", registry=r,
            multiprocess_mode="livesum",
        )
        if self._multiprocess_dir is None:
            self.queue_depth.set_function(queue_depth)
        self.registry_version = Gauge(
            "sanaq_gateway_registry_version", "Version of the accepted registry snapshot", registry=r,
            multiprocess_mode="livemin",
        )
        self.inflight = Gauge(
            "sanaq_gateway_ingest_inflight", "Batch requests being processed", registry=r,
            multiprocess_mode="livesum",
        )

    def exposition(self) -> bytes:
        """The text format of ``/metrics``: this process's registry, or the sum over all workers."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(combined, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(combined)

    async def sample_loop(self) -> None:
        """Under a supervisor: write this worker's commit queue depth where the others' sums see it."""
        if self._multiprocess_dir is None:
            return
        while True:
            self.queue_depth.set(self._queue_depth())
            await asyncio.sleep(1)
