"""The daemon: device events in, receipts out, systemd told about it over a real NOTIFY_SOCKET.

Devices come from a ``DeviceSource`` double fed with ``DeviceEvent`` values
whose device nodes are real FAT images under /dev/shm (a tmpfs below /dev,
so the events are what udev would report for a partition holding that image).
The udev adapter itself is tested under umockdev in test_usb_udev_*.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.sdnotify import Notifier
from usb_ingest.daemon import run
from usb_ingest.events import DeviceEvent
from usb_ingest.status import read_status

from .images import Env, Gateway, export, patch_image, seal


@pytest.fixture
def shm(env: Env) -> Callable[[str], Path]:
    """Paths under /dev/shm, removed after the test."""
    tag = secrets.token_hex(4)

    def make(name: str) -> Path:
        p = Path(f"/dev/shm/sanaq-test-{tag}-{name}")
        env.extra_cleanup.append(p)
        return p

    return make


class SystemdSocket:
    """The receiving end of sd_notify: a real AF_UNIX datagram socket."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.seen: list[str] = []

    async def wait_for(self, predicate: Callable[[str], bool], within_s: float = 20.0) -> str:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within_s):
            while True:
                msg = (await loop.sock_recv(self.sock, 65536)).decode()
                self.seen.append(msg)
                if predicate(msg):
                    return msg

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


@pytest.fixture
def systemd() -> Iterator[SystemdSocket]:
    s = SystemdSocket()
    yield s
    s.close()


class ListSource:
    """A ``DeviceSource`` double: fixed ``existing()`` devices, then whatever the test emits."""

    def __init__(self, existing: list[DeviceEvent]) -> None:
        self._existing = existing
        self.on_event: Callable[[DeviceEvent], None] | None = None
        self.stopped = False

    def existing(self) -> list[DeviceEvent]:
        return list(self._existing)

    def start(self, on_event: Callable[[DeviceEvent], None]) -> None:
        self.on_event = on_event

    def stop(self) -> None:
        self.stopped = True

    def emit(self, event: DeviceEvent) -> None:
        assert self.on_event is not None
        self.on_event(event)


def event(action: str, devnode: Path, *, label: str | None = "SANAQEXPORT", fs: str = "vfat",
          classes: tuple[str, ...] = ("08",), serial: str = "SER-TAB-0001") -> DeviceEvent:
    return DeviceEvent(action=action, devnode=str(devnode), sys_path=f"/sys/block/{devnode.name}", fs_type=fs,
                       fs_label=label, vendor_id="18d1", product_id="4ee7", serial=serial,
                       interface_classes=classes)


def status_has(**counts: object) -> Callable[[str], bool]:
    return lambda msg: msg.startswith("STATUS=") and all(f" {k}={v}" in f" {msg[7:]}" for k, v in counts.items())


async def test_the_daemon_ingests_plugged_tablets_and_survives_bad_devices(
    env: Env, gw: Gateway, shm: Callable[[str], Path], systemd: SystemdSocket
) -> None:
    first, corrupt, hid, second = shm("tab1.img"), shm("corrupt.img"), shm("hid.img"), shm("tab2.img")
    export(env, first, "TAB-0001", range(1, 5))
    export(env, corrupt, "TAB-0003", range(1, 3))
    patch_image(corrupt, lambda img, geo: img.__setitem__(slice(22, 24), b"\xff\xff"))
    export(env, hid, "TAB-0003", range(1, 3))
    export(env, second, "TAB-0002", range(1, 4))
    source = ListSource([event("add", first), event("add", Path("/dev/shm/none"), fs="ext4", label=None)])
    stop = asyncio.Event()
    config = env.config(gw.url)
    daemon = asyncio.create_task(run(config, source=source, notifier=Notifier(systemd.path, None), stop=stop))
    try:
        assert (await systemd.wait_for(lambda m: m.startswith("READY=1"))).startswith("READY=1\nSTATUS=")
        await systemd.wait_for(status_has(pending=0, delivered=4, forward="idle"))
        assert gw.rows("SELECT count(*) FROM batches WHERE device_id = 'TAB-0001'") == [(4,)]

        source.emit(event("remove", first))
        source.emit(event("add", corrupt))
        source.emit(event("add", hid, classes=("08", "03")))
        source.emit(event("add", second))
        await systemd.wait_for(status_has(pending=0, delivered=7, forward="idle"))
        assert gw.rows("SELECT device_id, count(*) FROM batches GROUP BY device_id") == [
            ("TAB-0001", 4), ("TAB-0002", 3)]
        assert gw.rows("SELECT device_id FROM custody ORDER BY device_id") == [("TAB-0001",), ("TAB-0002",)]
        view = read_status(config.status_path)
        devices = {d.devnode: d for d in view.devices}
        assert str(first) not in devices  # unplugged after a complete pull
        assert devices[str(corrupt)].state == "refused"
        assert devices[str(hid)].state == "refused" and "keyboard" in devices[str(hid)].message
        assert devices[str(second)].state == "done" and "You may unplug" in devices[str(second)].message
        assert (view.verified_total, view.delivered, view.trust_state) == (7, 7, "ok")
    finally:
        stop.set()
        assert await asyncio.wait_for(daemon, 20) == 0
    assert any(m.startswith("STOPPING=1") for m in systemd.seen) or await systemd.wait_for(
        lambda m: m.startswith("STOPPING=1"))
    assert source.stopped
    assert read_status(config.status_path).forward_state == "stopped"


async def test_a_replug_during_a_pull_is_not_lost(
    env: Env, gw: Gateway, shm: Callable[[str], Path], systemd: SystemdSocket
) -> None:
    image = shm("tab1.img")
    export(env, image, "TAB-0001", range(1, 4))
    source = ListSource([event("add", image), event("change", image), event("add", image)])
    stop = asyncio.Event()
    daemon = asyncio.create_task(
        run(env.config(gw.url), source=source, notifier=Notifier(systemd.path, None), stop=stop))
    try:
        await systemd.wait_for(status_has(pending=0, delivered=3, forward="idle"))
        export(env, image, "TAB-0001", range(4, 6))  # the tablet exported its next batches
        source.emit(event("change", image))
        await systemd.wait_for(status_has(pending=0, delivered=5, forward="idle"))
        assert gw.rows("SELECT count(*) FROM batches") == [(5,)]
    finally:
        stop.set()
        assert await asyncio.wait_for(daemon, 20) == 0


async def test_status_shows_live_progress_during_a_pull_of_thousands_of_sheets(
    env: Env, gw: Gateway, shm: Callable[[str], Path], systemd: SystemdSocket
) -> None:
    """What `sanaq-usb-ingest status --watch` reads: status.json, sampled while 4,000 sheets are pulled."""
    image = shm("big.img")
    seqs = range(1, 401)
    export(env, image, "TAB-0001", seqs, envelopes={s: seal(env, "TAB-0001", s, sheets=10) for s in seqs})
    config = env.config(gw.url)
    source = ListSource([])
    stop = asyncio.Event()
    daemon = asyncio.create_task(run(config, source=source, notifier=Notifier(systemd.path, None), stop=stop))
    samples: list[tuple[int, int, int, int, str]] = []
    try:
        await systemd.wait_for(lambda m: m.startswith("READY=1"))
        source.emit(event("add", image))
        async with asyncio.timeout(120):
            while True:
                view = read_status(config.status_path) if config.status_path.exists() else None
                device = next((d for d in view.devices if d.devnode == str(image)), None) if view else None
                if device is not None:
                    samples.append((device.batches_done, device.batches_total, device.bytes_done,
                                    device.bytes_total, device.state))
                    if device.state in ("done", "refused", "failed"):
                        break
                await asyncio.sleep(0.02)  # sampling the file as a technician's screen would, not a timing wait
        await systemd.wait_for(status_has(pending=0, delivered=400, forward="idle"), within_s=120)
    finally:
        stop.set()
        assert await asyncio.wait_for(daemon, 60) == 0
    assert samples[-1][0] == samples[-1][1] == 400
    assert samples[-1][4] == "done"
    during = [s for s in samples if 0 < s[0] < s[1]]
    assert during, f"no intermediate progress seen in {len(samples)} samples"
    assert all(0 < b < total_b for _, _, b, total_b, _ in during)  # bytes advance with batches
    done = [s[0] for s in samples]
    assert done == sorted(done)  # progress never goes backwards
    assert gw.rows("SELECT count(*), sum(sheets_accepted) FROM batches") == [(400, 4000)]
