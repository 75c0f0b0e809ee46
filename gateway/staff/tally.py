"""Running per-device and per-day totals, fed batch by batch (batches are insert-only).

The dashboard keeps this in memory and feeds it only the batches stored since
the last refresh, so a refresh costs O(new batches) however large the census
grows. Per device it keeps the highest contiguous seq and the few seqs that
arrived beyond a gap, which is all the fleet table needs (gaps, last sync,
road of the last batch).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .queries import BatchRow, PersonRow

__all__ = ["CensusTally", "DeviceTally"]

DAY_MS = 86_400_000


@dataclass(slots=True)
class DeviceTally:
    device_id: str
    highest_contiguous: int = 0
    beyond: set[int] = field(default_factory=set)
    last_sync_ms: int | None = None
    last_road: str | None = None
    sheets: int = 0

    def add(self, row: BatchRow) -> None:
        if row.seq == self.highest_contiguous + 1:
            self.highest_contiguous = row.seq
            while self.highest_contiguous + 1 in self.beyond:
                self.highest_contiguous += 1
                self.beyond.discard(self.highest_contiguous)
        elif row.seq > self.highest_contiguous:
            self.beyond.add(row.seq)
        self.sheets += row.sheets_accepted
        if self.last_sync_ms is None or row.received_at_ms >= self.last_sync_ms:
            self.last_sync_ms = row.received_at_ms
            self.last_road = row.road

    @property
    def max_seq(self) -> int:
        return max(self.beyond, default=self.highest_contiguous)

    @property
    def batches(self) -> int:
        return self.highest_contiguous + len(self.beyond)

    def gaps(self) -> list[tuple[int, int]]:
        """Missing seq ranges below max_seq, as in the signed sync state."""
        out: list[tuple[int, int]] = []
        expected = self.highest_contiguous + 1
        for s in sorted(self.beyond):
            if s > expected:
                out.append((expected, s - 1))
            expected = s + 1
        return out


@dataclass(slots=True)
class CensusTally:
    """Totals over every batch seen so far; ``high_water`` is the last batch id folded in."""

    utc_offset_ms: int
    high_water: int = 0
    devices: dict[str, DeviceTally] = field(default_factory=dict)
    sheets_by_day: dict[int, int] = field(default_factory=dict)
    quarantined_by_day: dict[int, int] = field(default_factory=dict)
    road_last_seen: dict[str, int] = field(default_factory=dict)
    seen_entries: dict[str, set[str]] = field(default_factory=dict)
    persons: list[PersonRow] = field(default_factory=list)
    persons_high_water: int = 0
    batches: int = 0
    sheets: int = 0

    def local_day(self, at_ms: int) -> int:
        """Days since 1970-01-01 in the census local time zone."""
        return (at_ms + self.utc_offset_ms) // DAY_MS

    def add_batches(self, rows: Iterable[BatchRow]) -> None:
        for row in rows:
            device = self.devices.get(row.device_id)
            if device is None:
                device = self.devices[row.device_id] = DeviceTally(row.device_id)
            device.add(row)
            day = self.local_day(row.received_at_ms)
            self.sheets_by_day[day] = self.sheets_by_day.get(day, 0) + row.sheets_accepted
            if row.sheets_quarantined:
                self.quarantined_by_day[day] = self.quarantined_by_day.get(day, 0) + row.sheets_quarantined
            self.road_last_seen[row.road] = max(self.road_last_seen.get(row.road, 0), row.received_at_ms)
            self.batches += 1
            self.sheets += row.sheets_accepted
            self.high_water = max(self.high_water, row.id)

    def add_persons(self, rows: Iterable[PersonRow]) -> None:
        for row in rows:
            self.persons.append(row)
            self.persons_high_water = max(self.persons_high_water, row.id)

    def add_entries(self, pairs: Iterable[tuple[str, str]]) -> None:
        for code, entry in pairs:
            self.seen_entries.setdefault(code, set()).add(entry)
