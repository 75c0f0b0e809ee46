"""The dashboard's view model, computed from the tally, the registry and small census reads.

Pure: everything it needs is passed in (including ``now_ms``), so each rule
(staleness colours, what raises an alert) is testable without a server.
Colours: green = last sync < ``fresh_h``, amber < ``silent_h``, red older or
never; tablets not in service (returned, lost, revoked) are grey.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from l10n import N_
from wire import RegistrySnapshot

from .acts import CustodyCheck
from .config import StaffConfig
from .coverage import Coverage
from .queries import CustodyPull, ReasonCount, SecurityEventRow
from .tally import CensusTally, DeviceTally

__all__ = ["Alert", "ChartBar", "DashboardModel", "FleetRow", "build_model"]

HOUR_MS = 3_600_000
_RED_EVENTS = {"seq-conflict": N_("%(n)s batch conflicts (same device and seq, different bytes)")}
_REVOKED_EVENTS = ("revoked-device-batch", "revoked-signer")


@dataclass(frozen=True, slots=True)
class FleetRow:
    device_id: str
    institution: str
    worker_id: str
    status: str
    last_sync: str
    age: str
    last_road: str
    highest_contiguous: int
    max_seq: int
    gaps: int
    sheets: int
    colour: str  # green | amber | red | grey
    last_sync_ms: int | None = None
    age_min: int | None = None  # minutes since the last sync (None: never)


@dataclass(frozen=True, slots=True)
class ChartBar:
    label: str
    sheets: int
    quarantined: int
    x: int
    y: int
    height: int
    q_y: int
    q_height: int


@dataclass(frozen=True, slots=True)
class Alert:
    """``message`` is an English message id; ``params`` fill its placeholders (see ``Views``' ``said``)."""

    level: str  # red | amber
    kind: str
    subject: str
    message: str
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The alert in English with the raw values (logs, JSON)."""
        return self.message % dict(self.params) if self.params else self.message


@dataclass(frozen=True, slots=True)
class DashboardModel:
    generated_at: str
    registry_version: int | None
    registry_expires: str
    batches: int
    sheets: int
    colours: dict[str, int]
    fleet: tuple[FleetRow, ...]
    fleet_total: int
    chart: tuple[ChartBar, ...]
    chart_max: int
    coverage: Coverage
    alerts: tuple[Alert, ...]
    security_recent: tuple[SecurityEventRow, ...]
    quarantine: tuple[ReasonCount, ...]
    custody: tuple[CustodyPull, ...]
    checks: tuple[CustodyCheck, ...] = field(default=())
    generated_at_ms: int = 0
    registry_expires_ms: int | None = None

    def summary(self) -> dict[str, object]:
        """Small JSON view for the polling endpoint and scripts."""
        return {
            "generated_at": self.generated_at,
            "registry_version": self.registry_version,
            "batches": self.batches,
            "sheets": self.sheets,
            "tablets": self.colours,
            "alerts": len(self.alerts),
            "coverage": {
                "listed": self.coverage.overall.listed,
                "enumerated": self.coverage.overall.enumerated,
                "institutions": {c.key: [c.enumerated, c.listed] for c in self.coverage.institutions},
                "persons": self.coverage.overall.persons,
                "review_open": self.coverage.overall.review_open,
            },
            "fleet": {r.device_id: {"colour": r.colour, "max_seq": r.max_seq, "gaps": r.gaps} for r in self.fleet},
        }


def _minutes(now_ms: int, at_ms: int | None) -> int | None:
    return None if at_ms is None else max(0, now_ms - at_ms) // 60_000


def _age(now_ms: int, at_ms: int | None) -> str:
    minutes = _minutes(now_ms, at_ms)
    if minutes is None:
        return "never"
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} d"


def _colour(config: StaffConfig, now_ms: int, status: str, last_sync_ms: int | None) -> str:
    if status != "issued":
        return "grey"
    if last_sync_ms is None:
        return "red"
    age = now_ms - last_sync_ms
    if age < config.fresh_h * HOUR_MS:
        return "green"
    return "amber" if age < config.silent_h * HOUR_MS else "red"


def _fleet(config: StaffConfig, now_ms: int, tally: CensusTally, snapshot: RegistrySnapshot | None) -> list[FleetRow]:
    tablets = {t.device_id: t for t in snapshot.tablets} if snapshot else {}
    rows = []
    for device_id in set(tablets) | set(tally.devices):
        t = tablets.get(device_id)
        d = tally.devices.get(device_id) or DeviceTally(device_id)
        status = t.status if t else "unregistered"
        rows.append(
            FleetRow(
                device_id=device_id,
                institution=t.institution if t else "",
                worker_id=t.worker_id if t else "",
                status=status,
                last_sync=config.local_text(d.last_sync_ms),
                age=_age(now_ms, d.last_sync_ms),
                last_road=d.last_road or "",
                highest_contiguous=d.highest_contiguous,
                max_seq=d.max_seq,
                gaps=len(d.gaps()),
                sheets=d.sheets,
                colour=_colour(config, now_ms, status, d.last_sync_ms),
                last_sync_ms=d.last_sync_ms,
                age_min=_minutes(now_ms, d.last_sync_ms),
            )
        )
    order = {"red": 0, "amber": 1, "green": 2, "grey": 3}
    rows.sort(key=lambda r: (order[r.colour], r.device_id))
    return rows


def _chart(config: StaffConfig, now_ms: int, tally: CensusTally) -> tuple[list[ChartBar], int]:
    today = tally.local_day(now_ms)
    days = list(range(today - config.chart_days + 1, today + 1))
    counts = [(tally.sheets_by_day.get(d, 0), tally.quarantined_by_day.get(d, 0)) for d in days]
    top = max((s + q for s, q in counts), default=0) or 1
    height, step = 150, 48
    bars = []
    for i, (day, (sheets, quarantined)) in enumerate(zip(days, counts, strict=True)):
        h = round(height * sheets / top)
        qh = round(height * quarantined / top)
        label = (date(1970, 1, 1) + timedelta(days=day)).strftime("%m-%d")
        bars.append(ChartBar(label, sheets, quarantined, 40 + i * step, 170 - h, h, 170 - h - qh, qh))
    return bars, top


def _station_alerts(
    now_ms: int, snapshot: RegistrySnapshot, custody_seen: Mapping[str, int], tally: CensusTally
) -> list[Alert]:
    out = []
    validity = snapshot.expires_at_ms - snapshot.issued_at_ms
    for station in snapshot.stations:
        if station.status != "active":
            continue
        seen = [
            t
            for t in (custody_seen.get(station.station_id), tally.road_last_seen.get(f"station:{station.station_id}"))
            if t
        ]
        last = max(seen, default=None)
        sid = station.station_id
        if last is None:
            out.append(
                Alert("amber", "station", sid, N_("never heard from: cannot tell which registry snapshot it holds"))
            )
        elif now_ms - last > validity:
            out.append(
                Alert("red", "station", sid, N_("silent longer than a snapshot's validity: its trust has expired"))
            )
        elif last < snapshot.issued_at_ms:
            out.append(
                Alert(
                    "amber",
                    "station",
                    sid,
                    N_("last heard before snapshot v%(version)s: may hold an older one"),
                    {"version": snapshot.version},
                )
            )
    return out


def build_model(
    *,
    now_ms: int,
    config: StaffConfig,
    tally: CensusTally,
    snapshot: RegistrySnapshot | None,
    security: tuple[dict[str, int], list[SecurityEventRow]],
    quarantine: list[ReasonCount],
    custody: list[CustodyPull],
    custody_seen: Mapping[str, int],
    coverage: Coverage,
    checks: list[CustodyCheck],
) -> DashboardModel:
    fleet = _fleet(config, now_ms, tally, snapshot)
    alerts: list[Alert] = []
    if snapshot is None:
        alerts.append(Alert("red", "registry", "registry", N_("no registry snapshot loaded: nothing can sync")))
    elif snapshot.expires_at_ms - now_ms < 24 * HOUR_MS:
        level = "red" if snapshot.expires_at_ms <= now_ms else "amber"
        alerts.append(
            Alert(
                level,
                "registry",
                f"v{snapshot.version}",
                N_("expires %(expires_at_ms)s: publish a new snapshot"),
                {"expires_at_ms": snapshot.expires_at_ms},
            )
        )
    counts, recent = security
    for kind, label in _RED_EVENTS.items():
        if counts.get(kind):
            alerts.append(Alert("red", kind, "security", label, {"n": counts[kind]}))
    revoked = sum(counts.get(k, 0) for k in _REVOKED_EVENTS)
    if revoked:
        alerts.append(
            Alert(
                "red", "revoked", "security", N_("%(n)s attempts by revoked or out-of-service devices"), {"n": revoked}
            )
        )
    for kind, n in sorted(counts.items()):
        if kind not in _RED_EVENTS and kind not in _REVOKED_EVENTS:
            # TRANSLATORS: %(event)s is a security event's code name (e.g. bad-signature), shown as it is
            alerts.append(Alert("amber", kind, "security", N_("%(n)s %(event)s events"), {"n": n, "event": kind}))
    tablets = {t.device_id: t for t in snapshot.tablets} if snapshot else {}
    for row in fleet:
        t = tablets.get(row.device_id)
        if t is None or t.status != "issued":
            continue
        last = tally.devices[row.device_id].last_sync_ms if row.device_id in tally.devices else None
        reference = last if last is not None else t.issued_at_ms
        if now_ms - reference > config.silent_h * HOUR_MS:
            alerts.append(
                Alert(
                    "red",
                    "silent",
                    row.device_id,
                    N_("silent for %(silent_min)s (last sync %(last_sync_ms)s)"),
                    {"silent_min": _minutes(now_ms, reference), "last_sync_ms": last},
                )
            )
    for row in fleet:
        if row.gaps:
            gaps = tally.devices[row.device_id].gaps()
            text = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in gaps[:5])
            alerts.append(Alert("amber", "gaps", row.device_id, N_("missing batch seq %(seqs)s"), {"seqs": text}))
    if snapshot is not None:
        alerts.extend(_station_alerts(now_ms, snapshot, custody_seen, tally))
    quarantined = sum(r.count for r in quarantine)
    if quarantined:
        alerts.append(
            Alert("amber", "quarantine", "sheets", N_("%(n)s sheets quarantined (reasons below)"), {"n": quarantined})
        )
    alerts.extend(Alert("amber", "custody", c.device_id, c.msgid, c.params) for c in checks if not c.ok)
    alerts.sort(key=lambda a: (a.level != "red",))
    colours = dict.fromkeys(("green", "amber", "red", "grey"), 0)
    for row in fleet:
        colours[row.colour] += 1
    chart, top = _chart(config, now_ms, tally)
    return DashboardModel(
        generated_at=config.local_text(now_ms, seconds=True),
        registry_version=snapshot.version if snapshot else None,
        registry_expires=config.local_text(snapshot.expires_at_ms) if snapshot else "",
        batches=tally.batches,
        sheets=tally.sheets,
        colours=colours,
        fleet=tuple(fleet[: config.fleet_rows]),
        fleet_total=len(fleet),
        chart=tuple(chart),
        chart_max=top,
        coverage=coverage,
        alerts=tuple(alerts),
        security_recent=tuple(recent),
        quarantine=tuple(quarantine),
        custody=tuple(custody),
        checks=tuple(checks),
        generated_at_ms=now_ms,
        registry_expires_ms=snapshot.expires_at_ms if snapshot else None,
    )
