"""The technician view's state: what is plugged in, how far each pull is, what waits for the gateway.

The daemon (or a one-off ``pull``) keeps a ``StatusBoard`` and writes it to
``<state_dir>/status.json`` atomically (temp file + rename; no fsync: it is a
display, rebuilt on start). ``sanaq-usb-ingest status`` reads it back as a
``StatusView``; the file is 0640, so members of the service's group
(``sanaq-ingest``; the state directory is 0750) can run ``status``.
Progress updates are written at most every 0.2 s; every change of state is
written at once.

The plain messages are the contract with the technician: "do not unplug"
while a pull runs, and "you may unplug" once everything the volume can give
is durably in the spool (forwarding to the gateway does not need the tablet).
They are written in the station's language (``StationText``, the
``language`` option), so ``status.json`` shows what the technician reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .puller import Progress, PullReport
from .spool import SpoolCounts
from .spool_state import SpoolSnapshot, TabletSpool
from .station_text import StationText
from .trust import TrustState

__all__ = ["DeviceView", "StatusBoard", "StatusView", "read_status", "unplug_message", "with_spool"]

_PROGRESS_INTERVAL_S = 0.2
STATUS_MODE = 0o640


@dataclass(frozen=True, slots=True)
class DeviceView:
    devnode: str
    state: str  # reading | done | refused | interrupted
    message: str
    device_id: str | None = None
    institution: str | None = None
    serial: str | None = None
    batches_total: int = 0
    batches_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    verified: int = 0
    refused: int = 0
    skipped: int = 0
    updated_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class StatusView:
    station_id: str
    pid: int
    updated_at_ms: int
    trust_state: str = "missing"
    trust_version: int | None = None
    trust_expires_at_ms: int | None = None
    alarm: str | None = None
    devices: tuple[DeviceView, ...] = ()
    verified_total: int = 0
    refused_total: int = 0
    spool_pending: int = 0
    spool_pending_bytes: int = 0
    custody_pending: int = 0
    rejected: int = 0
    delivered: int = 0
    tablets: tuple[TabletSpool, ...] = ()  # the spool per tablet, read from disk at the last update
    forward_state: str = "idle"  # idle | sending | waiting | blocked
    forward_next_retry_ms: int | None = None
    last_delivery_ms: int | None = None
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object) -> StatusView:
        """Strict: unknown or mistyped members raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError("status is not a JSON object")
        devices, tablets = data.get("devices", []), data.get("tablets", [])
        if not isinstance(devices, list) or not isinstance(tablets, list):
            raise ValueError("status devices or tablets is not a list")
        view: StatusView = _build(cls, {**data, "devices": (), "tablets": ()})
        return replace(view, devices=tuple(_build(DeviceView, d) for d in devices),
                       tablets=tuple(_build(TabletSpool, t) for t in tablets))


def _build(cls: Any, data: object) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} is not a JSON object")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"unknown status members: {sorted(unknown)}")
    missing = [n for n, f in names.items()
               if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"missing status members: {missing}")
    for name, value in data.items():
        if name in ("devices", "tablets"):
            continue
        kind = str(names[name].type)
        ok = (
            (value is None and "None" in kind)
            or (isinstance(value, bool) and "bool" in kind)
            or (isinstance(value, int) and not isinstance(value, bool) and "int" in kind)
            or (isinstance(value, str) and "str" in kind)
        )
        if not ok:
            raise ValueError(f"status member {name!r} has the wrong type")
    return cls(**data)


def read_status(path: Path) -> StatusView:
    """``OSError`` if absent/unreadable, ``ValueError`` if not a status file."""
    return StatusView.from_json(json.loads(path.read_bytes()[: 4 * 1024 * 1024]))


def with_spool(view: StatusView, spool: SpoolSnapshot) -> StatusView:
    """``view`` with its spool part replaced by ``spool`` (read from disk just now by ``status``)."""
    return replace(view, tablets=spool.tablets, spool_pending=spool.pending, spool_pending_bytes=spool.pending_bytes,
                   custody_pending=spool.custody_pending, delivered=spool.forwarded,
                   rejected=spool.rejected)


def _who(device_id: str | None, institution: str | None, t: StationText) -> str:
    """The tablet as the technician should name it: device id and the worker's institution."""
    if device_id is None:
        # TRANSLATORS: stands for a tablet whose device id could not be read
        return t.gettext("this device")
    if not institution:
        return device_id
    # TRANSLATORS: a tablet named by its device id and the worker's institution code (GLOSSARY: institution)
    return t.gettext("%(tablet)s (institution %(code)s)", tablet=device_id, code=institution)


def unplug_message(report: PullReport, text: StationText | None = None) -> tuple[str, str]:
    """(state, plain message for the technician, in ``text``'s language) once a pull has ended."""
    t = text or StationText("en")
    who = _who(report.device_id, report.institution, t)
    stored = len(report.spooled) + len(report.already_held) + len(report.already_delivered)
    if report.outcome == "interrupted":
        return "interrupted", t.ngettext(
            "Transfer from %(who)s interrupted after %(n)s new batch. Plug the tablet in again to finish; "
            "nothing is lost.",
            "Transfer from %(who)s interrupted after %(n)s new batches. Plug the tablet in again to finish; "
            "nothing is lost.",
            len(report.spooled), who=who)
    if report.outcome == "refused":
        # TRANSLATORS: %(why)s is the technical reason in English (for support), e.g. "manifest signature invalid"
        why = report.problems[0].message if report.problems else t.gettext("refused")
        return "refused", t.gettext("Nothing taken from %(who)s: %(why)s. You may unplug it; see the log.",
                                    who=who, why=why)
    if report.problems:
        return "done", t.ngettext(
            "%(n)s batch from %(who)s is stored on this machine; problems: %(problems)s, see the log. "
            "You may unplug the tablet.",
            "All %(n)s batches from %(who)s are stored on this machine; problems: %(problems)s, see the log. "
            "You may unplug the tablet.",
            stored, who=who, problems=len(report.problems))
    return "done", t.ngettext(
        "%(n)s batch from %(who)s is stored on this machine. You may unplug the tablet.",
        "All %(n)s batches from %(who)s are stored on this machine. You may unplug the tablet.",
        stored, who=who)


@dataclass
class StatusBoard:
    """Thread-safe; the puller thread reports progress, the event loop everything else."""

    path: Path
    station_id: str
    clock: Callable[[], int]
    text: StationText = field(default_factory=StationText)
    _view: StatusView = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _last_write: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._view = StatusView(station_id=self.station_id, pid=os.getpid(), updated_at_ms=self.clock())

    @property
    def view(self) -> StatusView:
        with self._lock:
            return self._view

    def _mutate(self, change: Callable[[StatusView], StatusView], *, throttle: bool = False) -> None:
        with self._lock:
            self._view = replace(change(self._view), updated_at_ms=self.clock())
            now = time.monotonic()
            if throttle and now - self._last_write < _PROGRESS_INTERVAL_S:
                return
            self._last_write = now
            self._write(self._view)

    def _update(self, **changes: Any) -> None:
        self._mutate(lambda v: replace(v, **changes))

    def flush(self) -> None:
        self._mutate(lambda v: v)

    def _write(self, view: StatusView) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(view.to_json(), sort_keys=True, indent=1), encoding="utf-8")
            os.chmod(tmp, STATUS_MODE)  # the service's group (technicians) may read it; no personal data in it
            os.replace(tmp, self.path)
        except OSError:
            return  # a display: a full disk must not stop ingestion (the spool reports its own errors)

    def _set_device(self, devnode: str, *, throttle: bool = False, **changes: Any) -> None:
        now = self.clock()

        def change(view: StatusView) -> StatusView:
            devices = {d.devnode: d for d in view.devices}
            current = devices.get(devnode) or DeviceView(devnode=devnode, state="reading", message="")
            devices[devnode] = replace(current, updated_at_ms=now, **changes)
            return replace(view, devices=tuple(devices.values()))

        self._mutate(change, throttle=throttle)

    def device_started(self, devnode: str, serial: str | None) -> None:
        self._set_device(devnode, state="reading", serial=serial, batches_total=0, batches_done=0, bytes_total=0,
                         bytes_done=0, message=self.text.gettext("Reading the tablet. Do not unplug it."))

    def device_progress(self, devnode: str, progress: Progress) -> None:
        who = _who(progress.device_id, progress.institution, self.text)
        self._set_device(devnode, throttle=progress.batches_done not in (0, progress.batches_total),
                         device_id=progress.device_id, institution=progress.institution,
                         batches_total=progress.batches_total, batches_done=progress.batches_done,
                         bytes_total=progress.bytes_total, bytes_done=progress.bytes_done,
                         message=self.text.gettext("Reading %(tablet)s. Do not unplug it.", tablet=who))

    def device_finished(self, devnode: str, report: PullReport) -> None:
        state, message = unplug_message(report, self.text)
        self._set_device(devnode, state=state, message=message, device_id=report.device_id,
                         institution=report.institution, verified=len(report.spooled), refused=len(report.problems),
                         skipped=len(report.already_held) + len(report.already_delivered))
        last_error = f"{report.problems[0].code}: {report.problems[0].message}" if report.problems else None
        self._mutate(lambda v: replace(
            v,
            verified_total=v.verified_total + len(report.spooled),
            refused_total=v.refused_total + len(report.problems),
            last_error=last_error or v.last_error,
        ))

    def device_failed(self, devnode: str, message: str) -> None:
        self._set_device(devnode, state="refused", message=message)
        self._update(last_error=message)

    def device_removed(self, devnode: str) -> None:
        """Forget the device, unless its transfer was interrupted (that message must stay visible)."""
        self._mutate(lambda v: replace(v, devices=tuple(
            d for d in v.devices if d.devnode != devnode or d.state == "interrupted")))

    def set_trust(self, state: TrustState) -> None:
        alarm = None
        if state.state != "ok":
            alarm = (self.text.gettext("Registry snapshot expired: USB ingestion is stopped until the gateway is "
                                       "reached.")
                     if state.state == "expired"
                     else self.text.gettext("No registry snapshot: reach the gateway once to start."))
        self._update(trust_state=state.state, trust_version=state.version,
                     trust_expires_at_ms=state.expires_at_ms, alarm=alarm)

    def set_spool(self, counts: SpoolCounts, tablets: SpoolSnapshot | None = None) -> None:
        changes: dict[str, Any] = {"tablets": tablets.tablets} if tablets is not None else {}
        self._update(spool_pending=counts.pending, spool_pending_bytes=counts.pending_bytes,
                     custody_pending=counts.custody, rejected=counts.rejected, delivered=counts.delivered,
                     **changes)

    def set_forward(self, state: str, *, next_retry_ms: int | None = None, error: str | None = None,
                    delivered_at_ms: int | None = None) -> None:
        changes: dict[str, Any] = {"forward_state": state, "forward_next_retry_ms": next_retry_ms}
        if error is not None:
            changes["last_error"] = error
        if delivered_at_ms is not None:
            changes["last_delivery_ms"] = delivered_at_ms
        self._update(**changes)
