"""The fleet simulator's summary: one value, as JSON or as a table for a person (rich)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from .sync_report import SyncReport

__all__ = ["FleetReport", "percentile", "render_table", "summarize"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class FleetReport:
    fleet_id: str
    tablets: int
    sheets: int
    batches_sealed: int
    stored: int
    duplicates: int
    receipts_verified: int
    covered: int
    sheets_receipted: int
    sheets_quarantined: int
    retries: int
    clock_corrections: int
    refusals: tuple[tuple[str, int], ...]
    outcomes: tuple[tuple[str, int], ...]
    stopped: tuple[tuple[str, str], ...]  # (device id, stop code)
    pending_after: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    sync_seconds: float
    registry_version: int | None

    @property
    def sheets_per_s(self) -> float:
        return self.sheets_receipted / self.sync_seconds if self.sync_seconds > 0 else 0.0

    @property
    def batches_per_s(self) -> float:
        return self.receipts_verified / self.sync_seconds if self.sync_seconds > 0 else 0.0

    @property
    def all_delivered(self) -> bool:
        return self.pending_after == 0 and not self.stopped and self.receipts_verified + self.covered == \
            self.batches_sealed

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value.update(refusals=dict(self.refusals), outcomes=dict(self.outcomes),
                     stopped=[{"device_id": d, "code": c} for d, c in self.stopped],
                     sheets_per_s=round(self.sheets_per_s, 1), batches_per_s=round(self.batches_per_s, 1),
                     all_delivered=self.all_delivered)
        return value


def summarize(
    reports: Sequence[SyncReport], *, tablets: int, sheets: int, batches_sealed: int, sync_seconds: float,
    registry_version: int | None, fleet_id: str,
) -> FleetReport:
    latencies = [ms for r in reports for ms in r.latencies_ms]
    refusals: Counter[str] = Counter()
    for r in reports:
        refusals.update(dict(r.refusals))
    return FleetReport(
        fleet_id=fleet_id,
        tablets=tablets,
        sheets=sheets,
        batches_sealed=batches_sealed,
        stored=sum(r.stored for r in reports),
        duplicates=sum(r.duplicates for r in reports),
        receipts_verified=sum(r.receipts_verified for r in reports),
        covered=sum(r.covered for r in reports),
        sheets_receipted=sum(r.sheets_receipted for r in reports),
        sheets_quarantined=sum(r.sheets_quarantined for r in reports),
        retries=sum(r.retries for r in reports),
        clock_corrections=sum(r.clock_corrections for r in reports),
        refusals=tuple(sorted(refusals.items())),
        outcomes=tuple(sorted(Counter(r.outcome for r in reports).items())),
        stopped=tuple((r.device_id, r.stop.code) for r in reports if r.stop is not None),
        pending_after=sum(r.pending_after for r in reports),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        latency_p99_ms=percentile(latencies, 99),
        sync_seconds=sync_seconds,
        registry_version=registry_version,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def render_table(report: FleetReport, console: Console | None = None) -> None:
    """Print the summary as a two-column table (stdout unless a console is given)."""
    table = Table(title=f"fleet {report.fleet_id}: {report.tablets} tablets", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("sheets generated", str(report.sheets)),
        ("batches sealed", str(report.batches_sealed)),
        ("receipts verified", str(report.receipts_verified)),
        ("  stored now", str(report.stored)),
        ("  duplicates", str(report.duplicates)),
        ("covered by sync state", str(report.covered)),
        ("sheets receipted", str(report.sheets_receipted)),
        ("sheets quarantined", str(report.sheets_quarantined)),
        ("batches still pending", str(report.pending_after)),
        ("retries", str(report.retries)),
        ("clock corrections", str(report.clock_corrections)),
        ("refusals", ", ".join(f"{c}={n}" for c, n in report.refusals) or "none"),
        ("outcomes", ", ".join(f"{c}={n}" for c, n in report.outcomes)),
        ("stopped tablets", ", ".join(f"{d} ({c})" for d, c in report.stopped) or "none"),
        ("latency p50 / p95 / p99",
         f"{_ms(report.latency_p50_ms)} / {_ms(report.latency_p95_ms)} / {_ms(report.latency_p99_ms)}"),
        ("sync time", f"{report.sync_seconds:.2f} s"),
        ("sheets/s", f"{report.sheets_per_s:.0f}"),
        ("batches/s", f"{report.batches_per_s:.0f}"),
        ("registry version", "-" if report.registry_version is None else str(report.registry_version)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    (console or Console()).print(table)
