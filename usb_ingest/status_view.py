"""The technician's view of ``status.json``: one screen with rich, refreshed by ``--watch``.

Everything on it is in the station's language (``StationText``); state
codes from the file (``reading``, ``waiting``, ``expired`` ...) are shown as
their labels, numbers and sizes in the language's own format.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from l10n import N_

from .spool_state import SpoolSnapshot
from .station_text import StationText
from .status import StatusView, read_status, with_spool

__all__ = ["STATES", "daemon_alive", "load_view", "render", "watch"]

# The codes status.json carries, as the technician reads them.
STATES = {
    # TRANSLATORS: a tablet's transfer state on the station screen
    "reading": N_("reading"),
    "done": N_("done"),
    "refused": N_("refused"),
    "interrupted": N_("interrupted"),
    # TRANSLATORS: the registry snapshot the station trusts: valid
    "ok": N_("valid"),
    "expired": N_("expired"),
    "missing": N_("missing"),
    # TRANSLATORS: forwarding to the gateway: nothing to send
    "idle": N_("idle"),
    "sending": N_("sending"),
    # TRANSLATORS: forwarding to the gateway: waiting to try again
    "waiting": N_("waiting"),
    # TRANSLATORS: forwarding to the gateway: the gateway refuses this station
    "blocked": N_("blocked"),
    "stopped": N_("stopped"),
}


def _bytes(n: int, t: StationText) -> str:
    size = float(n)
    for unit in (N_("B"), N_("kB"), N_("MB"), N_("GB")):
        if size < 1000 or unit == "GB":
            amount = t.format.number(size) if unit == "B" else t.format.number(size, digits=1)
            return t.gettext("%(amount)s %(unit)s", amount=amount, unit=t.gettext(unit))
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _span(seconds: float, t: StationText) -> str:
    span = abs(seconds)
    unit, size = next(((u, s) for u, s in ((N_("d"), 86400), (N_("h"), 3600), (N_("min"), 60), (N_("s"), 1))
                       if span >= s), (N_("s"), 1))
    digits = 0 if unit in ("s", "min") else 1
    return f"{t.format.number(span / size, digits=digits)} {t.gettext(unit)}"


def _when(ms: int | None, now_ms: int, t: StationText) -> str:
    if ms is None:
        return "-"
    delta = (ms - now_ms) / 1000
    if abs(delta) < 1:
        return t.gettext("now")
    amount = _span(delta, t)
    return t.gettext("in %(amount)s", amount=amount) if delta > 0 else t.gettext("%(amount)s ago", amount=amount)


def _state(code: str, t: StationText) -> str:
    return t.gettext(STATES[code]) if code in STATES else code


def daemon_alive(view: StatusView) -> bool:
    try:
        os.kill(view.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age(ms: int | None, now_ms: int, t: StationText) -> str:
    """How long ``ms`` is past, e.g. "5 s" ("0 s" under a second)."""
    return "-" if ms is None else _span(max(0, now_ms - ms) / 1000 if now_ms - ms >= 1000 else 0, t)


def load_view(status_path: Path, read_spool: Callable[[], SpoolSnapshot] | None) -> tuple[StatusView, bool]:
    """``status.json`` with its spool part read from disk just now when ``read_spool`` can (True), else the
    spool as the service last read it (False). ``OSError``/``ValueError`` as ``read_status``."""
    view = read_status(status_path)
    if read_spool is None:
        return view, False
    try:
        return with_spool(view, read_spool()), True
    except OSError:
        return view, False


def _tablets(view: StatusView, now_ms: int, fresh: bool, t: StationText) -> Table:
    if fresh:
        # TRANSLATORS: title of the station screen's table of the spool per tablet
        title = t.gettext("Spool by tablet (read from disk now)")
    else:
        # TRANSLATORS: %(when)s is e.g. "5 s ago"
        title = t.gettext("Spool by tablet (as the service saw it %(when)s)", when=_when(view.updated_at_ms, now_ms, t))
    table = Table(title=title, expand=True)
    table.add_column(t.gettext("Tablet"), overflow="fold", min_width=12)
    # TRANSLATORS: columns of the spool table: batches waiting for the gateway, their size, the oldest one's age,
    # batches the gateway receipted, batches the gateway rejected
    for col in (N_("Pending"), N_("Pending bytes"), N_("Oldest pending"), N_("Forwarded"), N_("Rejected")):
        table.add_column(t.gettext(col), no_wrap=True)
    for tab in view.tablets:
        table.add_row(tab.device_id, t.format.number(tab.pending), _bytes(tab.pending_bytes, t),
                      _age(tab.oldest_pending_ms, now_ms, t), t.format.number(tab.forwarded),
                      Text(t.format.number(tab.rejected), style="red" if tab.rejected else ""))
    if not view.tablets:
        table.add_row("-", t.format.number(0), _bytes(0, t), "-", t.format.number(0), t.format.number(0))
    return table


def _institution(code: str | None, t: StationText) -> str | None:
    # TRANSLATORS: the worker's institution code under the tablet's device id (GLOSSARY: institution)
    return t.gettext("institution %(code)s", code=code) if code else None


def render(view: StatusView, *, now_ms: int, alive: bool = True, text: StationText | None = None,
           fresh: bool = False) -> RenderableType:
    t = text or StationText("en")
    parts: list[RenderableType] = []
    if not alive:
        parts.append(Panel(Text(t.gettext("The ingest service is not running; this is its last known state."),
                                style="bold yellow")))
    if view.alarm:
        parts.append(Panel(Text(view.alarm, style="bold red"), title=t.gettext("ALARM"), border_style="red"))
    # TRANSLATORS: GLOSSARY: tablet = планшет / планшет
    devices = Table(title=t.gettext("Connected tablets"), expand=True)
    # TRANSLATORS: column of the station screen: the USB device node (e.g. /dev/sdb)
    devices.add_column(t.gettext("Device"), overflow="fold", min_width=10)
    devices.add_column(t.gettext("Tablet"), no_wrap=True, min_width=9)
    devices.add_column(t.gettext("State"), no_wrap=True)
    # TRANSLATORS: column of the station screen with a progress bar of the transfer
    devices.add_column(t.gettext("Progress"), no_wrap=True, min_width=10)
    for col in (t.gettext("Batches"), t.gettext("Bytes"), t.gettext("Verified / refused")):
        devices.add_column(col)
    messages: list[RenderableType] = []
    for d in view.devices:
        style = {"reading": "yellow", "done": "green", "refused": "red", "interrupted": "red"}.get(d.state, "")
        devices.add_row(
            d.devnode, "\n".join(x for x in (d.device_id or "-", _institution(d.institution, t)) if x),
            Text(_state(d.state, t), style=style),
            ProgressBar(total=max(d.bytes_total, 1), completed=d.bytes_done if d.bytes_total else 0, width=10),
            f"{t.format.number(d.batches_done)}/{t.format.number(d.batches_total)}",
            f"{_bytes(d.bytes_done, t)}/{_bytes(d.bytes_total, t)}",
            f"{t.format.number(d.verified)} / {t.format.number(d.refused)}",
        )
        messages.append(Text(f"{d.devnode}: {d.message}", style=f"bold {style}"))
    if not view.devices:
        messages.append(Text(t.gettext("No tablet connected.")))
    parts.append(devices)
    parts.extend(messages)
    parts.append(_tablets(view, now_ms, fresh, t))
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    trust = _state(view.trust_state, t)
    if view.trust_version is not None:
        trust = t.gettext("%(state)s (registry v%(version)s, expires %(when)s)", state=trust,
                          version=view.trust_version, when=_when(view.trust_expires_at_ms, now_ms, t))
    forwarding = _state(view.forward_state, t)
    if view.forward_next_retry_ms:
        forwarding = t.gettext("%(state)s, next try %(when)s", state=forwarding,
                               when=_when(view.forward_next_retry_ms, now_ms, t))
    rows = [
        (t.gettext("Station"), view.station_id),
        # TRANSLATORS: whether the station holds a valid registry snapshot (the list of trusted tablets)
        (t.gettext("Trust"), trust),
        (t.gettext("Verified / refused since start"), f"{view.verified_total} / {view.refused_total}"),
        # TRANSLATORS: the spool: batches stored on this computer that the gateway has not yet receipted
        (t.gettext("Spool (waiting for the gateway)"),
         t.gettext("%(batches)s batches, %(size)s; %(custody)s custody records",
                   batches=t.format.number(view.spool_pending), size=_bytes(view.spool_pending_bytes, t),
                   custody=t.format.number(view.custody_pending))),
        # TRANSLATORS: batches the gateway has confirmed with a signed receipt
        (t.gettext("Delivered (receipted)"), t.format.number(view.delivered)),
        (t.gettext("Rejected by the gateway"), t.format.number(view.rejected) + (
            # TRANSLATORS: the command that lists the rejected batches; keep the command itself as it is
            " " + t.gettext("(sanaq-usb-ingest requeue --list)") if view.rejected else "")),
        (t.gettext("Forwarding"), forwarding),
        (t.gettext("Last delivery"), _when(view.last_delivery_ms, now_ms, t)),
        # TRANSLATORS: the error itself is shown in English, for support
        (t.gettext("Last error"), view.last_error or "-"),
        (t.gettext("Updated"), _when(view.updated_at_ms, now_ms, t)),
    ]
    for name, value in rows:
        summary.add_row(name, value)
    parts.append(Panel(summary, title=t.gettext("Station")))
    return Group(*parts)


def watch(path: Path, *, interval_s: float, console: Console, text: StationText | None = None,
          read_spool: Callable[[], SpoolSnapshot] | None = None) -> None:
    """Redraw from ``path`` (and the spool, when readable) every ``interval_s`` until interrupted (Ctrl-C)."""
    t = text or StationText("en")
    with Live(console=console, refresh_per_second=4, screen=False) as live:
        while True:
            try:
                view, fresh = load_view(path, read_spool)
                live.update(render(view, now_ms=time.time_ns() // 1_000_000, alive=daemon_alive(view), text=t,
                                   fresh=fresh))
            except (OSError, ValueError) as e:
                live.update(Text(t.gettext("no status available yet (%(reason)s)", reason=str(e)), style="yellow"))
            time.sleep(interval_s)
