"""The technician's view of ``status.json``: one screen with rich, refreshed by ``--watch``."""

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

from .spool_state import SpoolSnapshot
from .status import StatusView, read_status, with_spool

__all__ = ["daemon_alive", "load_view", "render", "watch"]


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _when(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return "-"
    delta = (ms - now_ms) / 1000
    if abs(delta) < 1:
        return "now"
    span = abs(delta)
    unit, size = next((u, s) for u, s in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)) if span >= s)
    amount = f"{span / size:.0f} {unit}" if unit in ("s", "min") else f"{span / size:.1f} {unit}"
    return f"in {amount}" if delta > 0 else f"{amount} ago"


def daemon_alive(view: StatusView) -> bool:
    try:
        os.kill(view.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age(ms: int | None, now_ms: int) -> str:
    return "-" if ms is None else _when(ms, now_ms).removesuffix(" ago").replace("now", "0 s")


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


def _tablets(view: StatusView, now_ms: int, fresh: bool) -> Table:
    source = "read from disk now" if fresh else f"as the service saw it {_when(view.updated_at_ms, now_ms)}"
    table = Table(title=f"Spool by tablet ({source})", expand=True)
    table.add_column("Tablet", overflow="fold", min_width=12)
    for col in ("Pending", "Pending bytes", "Oldest pending", "Forwarded", "Rejected"):
        table.add_column(col, no_wrap=True)
    for t in view.tablets:
        table.add_row(t.device_id, str(t.pending), _bytes(t.pending_bytes), _age(t.oldest_pending_ms, now_ms),
                      str(t.forwarded), Text(str(t.rejected), style="red" if t.rejected else ""))
    if not view.tablets:
        table.add_row("-", "0", _bytes(0), "-", "0", "0")
    return table


def render(view: StatusView, *, now_ms: int, alive: bool = True, fresh: bool = False) -> RenderableType:
    parts: list[RenderableType] = []
    if not alive:
        parts.append(Panel(Text("The ingest service is not running; this is its last known state.",
                                style="bold yellow")))
    if view.alarm:
        parts.append(Panel(Text(view.alarm, style="bold red"), title="ALARM", border_style="red"))
    devices = Table(title="Connected tablets", expand=True)
    devices.add_column("Device", overflow="fold", min_width=10)
    devices.add_column("Tablet", no_wrap=True, min_width=9)
    devices.add_column("State", no_wrap=True)
    devices.add_column("Progress", no_wrap=True, min_width=10)
    for col in ("Batches", "Bytes", "Verified / refused"):
        devices.add_column(col)
    messages: list[RenderableType] = []
    for d in view.devices:
        style = {"reading": "yellow", "done": "green", "refused": "red", "interrupted": "red"}.get(d.state, "")
        devices.add_row(
            d.devnode, "\n".join(x for x in (d.device_id or "-", d.institution) if x), Text(d.state, style=style),
            ProgressBar(total=max(d.bytes_total, 1), completed=d.bytes_done if d.bytes_total else 0, width=10),
            f"{d.batches_done}/{d.batches_total}", f"{_bytes(d.bytes_done)}/{_bytes(d.bytes_total)}",
            f"{d.verified} / {d.refused}",
        )
        messages.append(Text(f"{d.devnode}: {d.message}", style=f"bold {style}"))
    if not view.devices:
        messages.append(Text("No tablet connected."))
    parts.append(devices)
    parts.extend(messages)
    parts.append(_tablets(view, now_ms, fresh))
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    trust = view.trust_state
    if view.trust_version is not None:
        trust += f" (registry v{view.trust_version}, expires {_when(view.trust_expires_at_ms, now_ms)})"
    rows = [
        ("Station", view.station_id),
        ("Trust", trust),
        ("Verified / refused since start", f"{view.verified_total} / {view.refused_total}"),
        ("Spool (waiting for the gateway)", f"{view.spool_pending} batches, {_bytes(view.spool_pending_bytes)}; "
                                            f"{view.custody_pending} custody records"),
        ("Delivered (receipted)", str(view.delivered)),
        ("Rejected by the gateway", str(view.rejected) + (" (sanaq-usb-ingest requeue --list)"
                                                          if view.rejected else "")),
        ("Forwarding", f"{view.forward_state}" + (f", next try {_when(view.forward_next_retry_ms, now_ms)}"
                                                  if view.forward_next_retry_ms else "")),
        ("Last delivery", _when(view.last_delivery_ms, now_ms)),
        ("Last error", view.last_error or "-"),
        ("Updated", _when(view.updated_at_ms, now_ms)),
    ]
    for name, value in rows:
        summary.add_row(name, value)
    parts.append(Panel(summary, title="Station"))
    return Group(*parts)


def watch(path: Path, *, interval_s: float, console: Console,
          read_spool: Callable[[], SpoolSnapshot] | None = None) -> None:
    """Redraw from ``path`` (and the spool, when readable) every ``interval_s`` until interrupted (Ctrl-C)."""
    with Live(console=console, refresh_per_second=4, screen=False) as live:
        while True:
            try:
                view, fresh = load_view(path, read_spool)
                live.update(render(view, now_ms=time.time_ns() // 1_000_000, alive=daemon_alive(view), fresh=fresh))
            except (OSError, ValueError) as e:
                live.update(Text(f"no status available yet ({e})", style="yellow"))
            time.sleep(interval_s)
