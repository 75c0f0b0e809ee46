"""``run(config)``: the USB ingest service - device events in, verified batches out to the gateway.

One ``asyncio.TaskGroup`` owns everything: the forwarder, the snapshot
refresher, the systemd watchdog, the event dispatcher and one pull job per
candidate device. Each group of batches a pull seals wakes the forwarder, so
a big tablet's first batches reach the gateway while the rest is read.
Device events come from a ``DeviceSource`` (udev in
production, imported lazily so tests can pass a double): ``existing()`` at
start, then ``start(callback)``; the callback only queues the event.

Per device (keyed on ``devnode``): an ``add``/``change`` of a candidate
(vfat, label SANAQEXPORT) starts a pull in a worker thread unless one runs;
an event arriving meanwhile is remembered and pulled again afterwards (a
re-plug during the end of a pull is not lost; pulls are idempotent). A
``remove`` asks the running pull to stop between batches. A device whose USB
parent also offers a HID interface (keyboard, mouse) is refused when
``refuse_hid_composite`` is set. A failing pull is logged and shown; it never
ends the daemon.

Under systemd: READY=1 once the device monitor is started, STATUS= lines,
WATCHDOG=1 from the event loop, STOPPING=1 on SIGTERM/SIGINT; then running
pulls stop at the next batch boundary (what they spooled is kept) and the
service exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from runtime.sdnotify import Notifier

from .config import IngestConfig
from .errors import SpoolError
from .events import DeviceEvent
from .forwarder import Forwarder
from .gateway_client import GatewayClient
from .station import Station
from .trust import wall_clock_ms

if TYPE_CHECKING:
    from .udev_source import DeviceSource

__all__ = ["run"]

log = structlog.get_logger("usb_ingest.daemon")


@dataclass
class _Job:
    event: DeviceEvent
    stop: threading.Event = field(default_factory=threading.Event)
    again: DeviceEvent | None = None
    removed: bool = False


def _udev_source(loop: asyncio.AbstractEventLoop) -> DeviceSource:
    from .udev_source import UdevDeviceSource  # noqa: PLC0415 - pyudev/libudev only when running for real

    return UdevDeviceSource(loop)


class _Daemon:
    def __init__(self, station: Station, client: GatewayClient, notifier: Notifier) -> None:
        self.station = station
        self.config: IngestConfig = station.config
        self.client = client
        self.notifier = notifier
        self.queue: asyncio.Queue[DeviceEvent] = asyncio.Queue()
        self.jobs: dict[str, _Job] = {}
        self.job_tasks: set[asyncio.Task[None]] = set()
        self.forwarder = Forwarder(station.spool, client, station.trust, self.config.forward,
                                   on_state=self._forward_state)
        self._counts_at = 0.0
        self._delivered_seen = 0
        self._stopping = False

    # ---- status -----------------------------------------------------------------------------

    def _forward_state(self, state: str, retry_ms: int | None, error: str | None) -> None:
        delivered_at = None
        if self.forwarder.delivered_total != self._delivered_seen:
            self._delivered_seen = self.forwarder.delivered_total
            delivered_at = wall_clock_ms()
        self.station.board.set_forward(state, next_retry_ms=retry_ms, error=error, delivered_at_ms=delivered_at)
        now = time.monotonic()
        if state != "sending" or now - self._counts_at >= 1.0:
            self._counts_at = now
            self.station.refresh_status()
            self._notify_status()

    def _notify_status(self) -> None:
        v = self.station.board.view
        self.notifier.status(
            f"trust={v.trust_state} devices={len(v.devices)} pending={v.spool_pending} delivered={v.delivered} "
            f"rejected={v.rejected} forward={v.forward_state}"
        )

    def _trust_changed(self) -> None:
        self.station.refresh_status()
        self._notify_status()

    # ---- devices ----------------------------------------------------------------------------

    async def dispatch(self, tg: asyncio.TaskGroup) -> None:
        while True:
            event = await self.queue.get()
            try:
                self.handle(event, tg)
            except Exception:  # one odd event must not end the dispatcher
                log.exception("usb.device.event_failed", devnode=event.devnode)

    def handle(self, event: DeviceEvent, tg: asyncio.TaskGroup) -> None:
        job = self.jobs.get(event.devnode)
        if event.action == "remove":
            if job is not None:
                job.stop.set()
                job.again = None
                job.removed = True
            else:
                self.station.board.device_removed(event.devnode)
            log.info("usb.device.removed", devnode=event.devnode)
            return
        if not event.is_candidate:
            log.debug("usb.device.ignored", devnode=event.devnode, fs_type=event.fs_type)
            return
        if job is not None:
            job.again = event
            return
        self.start_job(event, tg)

    def start_job(self, event: DeviceEvent, tg: asyncio.TaskGroup) -> None:
        job = _Job(event)
        self.jobs[event.devnode] = job
        task = tg.create_task(self.pull_job(job, tg))
        self.job_tasks.add(task)
        task.add_done_callback(self.job_tasks.discard)

    async def pull_job(self, job: _Job, tg: asyncio.TaskGroup) -> None:
        event = job.event
        log.info("usb.device.candidate", devnode=event.devnode, vendor_id=event.vendor_id,
                 product_id=event.product_id, serial=event.serial)
        try:
            if event.has_hid_interface and self.config.refuse_hid_composite:
                log.warning("usb.security.event", kind="hid-interface", devnode=event.devnode,
                            vendor_id=event.vendor_id, product_id=event.product_id)
                self.station.board.device_failed(event.devnode, self.station.board.text.gettext(
                    "Refused: this device also acts as a keyboard or mouse. Unplug it."))
                return
            if not self.station.trust.check_alarm():
                await self.station.trust.refresh(self.client)
                self._trust_changed()
            loop = asyncio.get_running_loop()

            def sealed(_count: int) -> None:  # from the pull's thread: forward while the pull goes on
                loop.call_soon_threadsafe(self.forwarder.wake)

            report = await asyncio.to_thread(
                self.station.pull_volume, event.devnode, devnode=event.devnode, hints=event.hints,
                should_stop=job.stop.is_set, on_sealed=sealed,
            )
            if report.spooled or report.custody_spooled:
                self.forwarder.wake()
        except SpoolError:
            pass  # logged and shown by Station.pull_volume
        except Exception:  # a failing device never takes the daemon down
            log.exception("usb.pull.crashed", devnode=event.devnode)
            self.station.board.device_failed(
                event.devnode, self.station.board.text.gettext("Internal error while reading; see the log."))
        finally:
            if job.removed:  # unplugged while we read: forget it unless the message must stay
                self.station.board.device_removed(event.devnode)
            self._notify_status()
            if self.jobs.get(event.devnode) is job:
                del self.jobs[event.devnode]
                # an add after the last remove (a re-plug while this pull ended) is pulled; a stop is not
                if job.again is not None and not self._stopping:
                    self.start_job(job.again, tg)

    # ---- life cycle -------------------------------------------------------------------------

    async def serve(self, source: DeviceSource, stop: asyncio.Event) -> int:
        async with asyncio.TaskGroup() as tg:
            background = [
                tg.create_task(self.forwarder.run()),
                tg.create_task(self.station.trust.refresh_loop(self.client, self.config.snapshot_refresh_s,
                                                               self._trust_changed)),
                tg.create_task(self.notifier.watchdog_loop()),
                tg.create_task(self.dispatch(tg)),
            ]
            for event in source.existing():
                self.queue.put_nowait(event)
            source.start(self.queue.put_nowait)
            try:
                v = self.station.board.view
                self.notifier.ready(f"watching USB devices; trust={v.trust_state} pending={v.spool_pending}")
                log.info("usb.daemon.ready", station_id=self.station.identity.station_id,
                         gateway=self.client.url, trust=v.trust_state)
                await stop.wait()
            finally:
                log.info("usb.daemon.stopping", running_pulls=len(self.jobs))
                self.notifier.stopping()
                source.stop()
                self._stopping = True
                for job in self.jobs.values():
                    job.stop.set()
                    job.again = None
                if self.job_tasks:
                    await asyncio.wait(set(self.job_tasks))
                for task in background:
                    task.cancel()
        self.station.board.set_forward("stopped")
        log.info("usb.daemon.stopped")
        return 0


async def run(
    config: IngestConfig,
    *,
    source: DeviceSource | None = None,
    notifier: Notifier | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], int] = wall_clock_ms,
) -> int:
    """Run the service until ``stop`` is set (or SIGTERM/SIGINT when no ``stop`` is given).

    Raises ``IngestError`` (``StationSetupError``, ``StateLocked``, ``SpoolError``)
    when the station cannot start; returns 0 after a graceful stop.
    """
    loop = asyncio.get_running_loop()
    own_stop = stop is None
    stop = stop if stop is not None else asyncio.Event()
    if own_stop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    station = await asyncio.to_thread(Station.open, config, clock=clock)
    try:
        async with station.client() as client:
            daemon = _Daemon(station, client, notifier or Notifier.from_env())
            return await daemon.serve(source if source is not None else _udev_source(loop), stop)
    finally:
        station.close()
        if own_stop:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
