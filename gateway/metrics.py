"""Prometheus metrics of one gateway app, in their own registry (no global collectors)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    def __init__(self, queue_depth: Callable[[], float]) -> None:
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
        self.queue_depth = Gauge("sanaq_gateway_commit_queue_depth", "Jobs waiting for the store writer", registry=r)
        self.queue_depth.set_function(queue_depth)
        self.registry_version = Gauge(
            "sanaq_gateway_registry_version", "Version of the accepted registry snapshot", registry=r
        )
        self.inflight = Gauge("sanaq_gateway_ingest_inflight", "Batch requests being processed", registry=r)
