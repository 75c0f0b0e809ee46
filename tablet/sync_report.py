"""What one sync pass did, as a value: counters, the last signed sync state, and why it stopped.

``outcome`` is one of:

* ``complete``    nothing is left open in the outbox (every sealed batch has a
                  verified receipt or is covered by a verified sync state);
* ``incomplete``  the gateway could not be reached or kept answering "not now"
                  until the retry budget ran out; batches stay pending, try later;
* ``interrupted`` a stop was requested (SIGTERM/SIGINT) before the pass ended;
* ``stopped``     a refusal that needs a person (``stop`` says which, with a hint).

``exit_code`` maps these to the CLI's exit status: 0, 1, 1, 3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .sync_policy import hint_for

__all__ = ["StateSummary", "StopReason", "SyncReport"]

EXIT_CODES = {"complete": 0, "incomplete": 1, "interrupted": 1, "stopped": 3}


@dataclass(frozen=True, slots=True)
class StopReason:
    code: str
    detail: str
    seq: int | None = None
    status: int | None = None  # HTTP status when the gateway refused

    @property
    def hint(self) -> str:
        return hint_for(self.code)


@dataclass(frozen=True, slots=True)
class StateSummary:
    """The last verified sync state of the pass (gateway clock)."""

    highest_contiguous: int
    max_seq: int
    gaps: tuple[tuple[int, int], ...]
    issued_at_ms: int


@dataclass(frozen=True, slots=True)
class SyncReport:
    device_id: str
    outcome: str
    stored: int = 0  # batches the gateway stored in this pass (verified receipt, not a duplicate)
    duplicates: int = 0  # batches it already held (verified receipt of the first arrival)
    covered: int = 0  # batches closed by a verified sync state, without upload (e.g. delivered by USB)
    gap_fills: int = 0  # batches sent because the last sync state showed them missing
    sheets_receipted: int = 0
    sheets_quarantined: int = 0
    packed: int = 0  # batches sealed during the pass
    retries: int = 0
    clock_corrections: int = 0
    clock_offset_ms: int = 0
    seq_advanced_to: int | None = None  # re-provisioned tablet: new batches continue after the gateway's seqs
    refusals: tuple[tuple[str, int], ...] = ()  # every non-200 answer by code, retried or not
    pending_after: int = 0
    state: StateSummary | None = None
    stop: StopReason | None = None
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)  # per receipted batch, first try to receipt
    duration_s: float = 0.0

    @property
    def receipts_verified(self) -> int:
        return self.stored + self.duplicates

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["refusals"] = dict(self.refusals)
        value["receipts_verified"] = self.receipts_verified
        if self.state is not None:
            value["state"]["gaps"] = [list(g) for g in self.state.gaps]
        if self.stop is not None:
            value["stop"]["hint"] = self.stop.hint
        del value["latencies_ms"]
        return value

    def describe(self) -> str:
        """A few lines for a person: what happened, and what to do when it needs them."""
        lines = [
            f"sync {self.outcome}: {self.receipts_verified} receipts verified ({self.stored} stored, "
            f"{self.duplicates} already held), {self.covered} covered by sync state, "
            f"{self.pending_after} batches still pending",
        ]
        extra = []
        if self.retries:
            extra.append(f"{self.retries} retries")
        if self.clock_corrections:
            extra.append(f"clock corrected by {self.clock_offset_ms} ms")
        if self.gap_fills:
            extra.append(f"{self.gap_fills} gap batches resent")
        if self.seq_advanced_to is not None:
            extra.append(f"seq line continues at {self.seq_advanced_to} (re-provisioned)")
        if self.refusals:
            extra.append("refusals " + ", ".join(f"{c}={n}" for c, n in self.refusals))
        if extra:
            lines.append("  " + "; ".join(extra))
        if self.state is not None:
            gaps = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in self.state.gaps) or "none"
            lines.append(f"  gateway holds up to seq {self.state.highest_contiguous} contiguously "
                         f"(max {self.state.max_seq}, gaps {gaps})")
        if self.stop is not None:
            where = f" at seq {self.stop.seq}" if self.stop.seq is not None else ""
            lines.append(f"STOPPED{where}: {self.stop.code}: {self.stop.detail}")
            lines.append(f"  needs a person: {self.stop.hint}")
        return "\n".join(lines)
