"""A umockdev test bed in a child process, and fake USB sticks plugged into it.

Why a child process: the process that owns a ``UMockdev.Testbed`` must run with
``libumockdev-preload`` loaded, and libumockdev aborts (SIGABRT) its whole
process on some misuse (a full event socket, a re-added sysfs name). So pytest
itself stays an ordinary process, and the bed runs as
``LD_PRELOAD=libumockdev-preload.so.0 python umockdev_bed.py serve``, obeying
one JSON command per line on stdin (``plug``, ``unplug``, ``reset``) and
answering one JSON line on stdout. Every program under test (the
``probe`` below, the ingest daemon) is another child started with ``bed.env()``:
the preload plus ``UMOCKDEV_DIR`` set explicitly (libumockdev sets it with C
``setenv``, so it is not in any ``os.environ``). Those children see the bed's
``/sys`` and ``/dev`` through the preload and get its uevents on their own
libudev monitors - the real pyudev and libudev code paths, only the kernel is
simulated.

A plugged stick is a ``usb_device`` (idVendor, idProduct, serial), one
``usb_interface`` of class 08 (mass storage) and optionally one of class 03
(HID), a SCSI ``disk`` and, if partitioned, partition 1 carrying the
filesystem. The node file of the filesystem device (``$UMOCKDEV_DIR/dev/sdb1``)
is a copy of the given image, written before the ``add`` uevent and given mode
01644, which the preload reports as a block device; opening ``/dev/sdb1`` in a
preloaded child reads the image. (``st_size`` is the image size here but 0 for
a real block device: code under test must seek to the end for the size.)
``unplug`` sends ``remove`` uevents child first, then removes the devices and
the symlinks libumockdev leaves behind, so the same disk name can be plugged
again.

Run ``python umockdev_bed.py probe`` under ``bed.env()`` to get a
``UdevDeviceSource`` that prints ``existing()`` and every event as JSON lines.

The tests run in the ordinary suite (``make test``); alone:
``.venv/bin/pytest -m umockdev tests/usb_ingest``.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usb_ingest.events import DeviceEvent

PRELOAD = "libumockdev-preload.so.0"
DEBIAN_GI = "/usr/lib/python3/dist-packages/gi"
SETUP_HINT = "run `make setup` (Debian packages umockdev, gir1.2-umockdev-1.0, python3-gi)"
BED_SCRIPT = str(Path(__file__).resolve())
REPLY_TIMEOUT_S = 20.0

__all__ = ["BED_SCRIPT", "BedUnavailable", "LineReader", "SourceProbe", "Stick", "UmockdevBed"]


class BedUnavailable(RuntimeError):
    """The umockdev bed could not start (packages missing, preload not loaded, gi not importable)."""


# ---------------------------------------------------------------- parent side


class LineReader:
    """JSON lines from a child's stdout with a deadline per line (select, no sleeping)."""

    def __init__(self, proc: subprocess.Popen[bytes], what: str) -> None:
        assert proc.stdout is not None
        self.proc, self.what = proc, what
        self._fd = proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._buf = b""
        self.seen: list[dict[str, Any]] = []

    def next(self, timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError(f"{self.what}: no line within {timeout} s; seen {self.seen[-5:]}")
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    raise EOFError(f"{self.what} exited (rc={self.proc.poll()}); seen {self.seen[-5:]}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        item = json.loads(line)
        self.seen.append(item)
        return item

    def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        """The first line for which ``predicate(line)`` holds; earlier lines stay in ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.next(max(0.0, deadline - time.monotonic()))
            if predicate(item):
                return item


@dataclass(frozen=True)
class Stick:
    """A plugged fake device: ``devnode`` is the node carrying the filesystem (``/dev/sdb1`` or ``/dev/sdb``)."""

    handle: str
    devnode: str
    disk_node: str
    sys_path: str


class UmockdevBed:
    """Parent-side handle on the bed child: plug/unplug sticks, give env to programs under test."""

    def __init__(self, proc: subprocess.Popen[bytes], root: str) -> None:
        self.proc, self.root = proc, root
        self.children: list[subprocess.Popen[bytes]] = []
        self._reader = LineReader(proc, "umockdev bed")

    @classmethod
    def start(cls) -> UmockdevBed:
        env = dict(os.environ, LD_PRELOAD=_with_preload(os.environ.get("LD_PRELOAD")))
        env.pop("UMOCKDEV_DIR", None)
        proc = subprocess.Popen([sys.executable, BED_SCRIPT, "serve"], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        bed = cls(proc, "")
        try:
            hello = bed._reader.next()
        except (EOFError, TimeoutError) as e:
            bed.close()
            raise BedUnavailable(f"umockdev bed did not start: {e}; {SETUP_HINT}") from e
        if "error" in hello:
            bed.close()
            raise BedUnavailable(f"umockdev bed did not start: {hello['error']}; {SETUP_HINT}")
        bed.root = hello["root"]
        return bed

    def _call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"umockdev bed is gone (rc={self.proc.returncode})")
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        self.proc.stdin.flush()
        reply = self._reader.next()
        if not reply.get("ok"):
            raise RuntimeError(f"umockdev bed {op} failed: {reply.get('error')}")
        return reply

    def plug(
        self,
        image_path: str | os.PathLike[str],
        *,
        serial: str | None = "R58M123ABC",
        vendor: str = "04e8",
        product: str = "6860",
        label: str | None = "SANAQEXPORT",
        fs_type: str | None = "vfat",
        extra_hid: bool = False,
        partitioned: bool = True,
        bus: str = "usb",
        with_devname: bool = True,
        disk: str | None = None,
    ) -> Stick:
        """Plug a stick whose filesystem device reads ``image_path``; the ``add`` uevents go out now."""
        reply = self._call("plug", image=str(image_path), serial=serial, vendor=vendor, product=product, label=label,
                           fs_type=fs_type, extra_hid=extra_hid, partitioned=partitioned, bus=bus,
                           with_devname=with_devname, disk=disk)
        return Stick(reply["handle"], reply["devnode"], reply["disk_node"], reply["sys_path"])

    def unplug(self, stick: Stick) -> None:
        """Send ``remove`` uevents (partition, disk, interfaces, USB device) and remove the devices."""
        self._call("unplug", handle=stick.handle)

    def reset(self) -> None:
        """Unplug everything and forget monitors of exited processes (their event sockets)."""
        self._call("reset")

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a program under test: the preload and ``UMOCKDEV_DIR`` of this bed."""
        env = dict(os.environ if base is None else base)
        env["LD_PRELOAD"] = _with_preload(env.get("LD_PRELOAD"))
        env["UMOCKDEV_DIR"] = self.root
        return env

    def spawn(self, args: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start a program under test inside the bed (stdin/stdout pipes unless given)."""
        popen.setdefault("stdin", subprocess.PIPE)
        popen.setdefault("stdout", subprocess.PIPE)
        proc = subprocess.Popen(args, env=self.env(popen.pop("env", None)), **popen)
        self.children.append(proc)
        return proc

    def end_children(self) -> None:
        """Kill what ``spawn`` started and is still running (their monitors must not fill up)."""
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
            with proc:  # closes its pipes, waits
                pass
        self.children.clear()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.end_children()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode != 0 and self.root:  # a bed that died leaves its directory behind
            shutil.rmtree(self.root, ignore_errors=True)


class SourceProbe:
    """``UdevDeviceSource`` running in a child inside the bed; its events come back as ``DeviceEvent``s."""

    def __init__(self, bed: UmockdevBed) -> None:
        self.proc = bed.spawn([sys.executable, BED_SCRIPT, "probe"])
        self.lines = LineReader(self.proc, "source probe")
        self.existing = [_event(d) for d in self.lines.until(lambda line: line["event"] == "probe.existing")["devices"]]
        self.lines.until(lambda line: line["event"] == "probe.started")

    def next_event(self, devnode: str | None = None, action: str | None = None, timeout: float = 10) -> DeviceEvent:
        """The next ``DeviceEvent`` (for ``devnode`` / ``action`` if given); others are skipped."""
        def wanted(line: dict[str, Any]) -> bool:
            return (line["event"] == "probe.device" and (devnode is None or line["devnode"] == devnode)
                    and (action is None or line["action"] == action))
        return _event(self.lines.until(wanted, timeout))

    def logged(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines.seen if line.get("event") == name]

    def stop(self) -> list[dict[str, Any]]:
        """Close stdin (the probe calls ``stop()`` twice and exits); return every line it printed."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.lines.until(lambda line: line["event"] == "probe.stopped")
        assert self.proc.wait(10) == 0
        return self.lines.seen


def _event(fields: dict[str, Any]) -> DeviceEvent:
    fields = dict(fields)
    fields.pop("event", None)
    is_candidate = fields.pop("is_candidate")
    event = DeviceEvent(**{**fields, "interface_classes": tuple(fields["interface_classes"])})
    assert event.is_candidate == is_candidate
    return event


def _with_preload(current: str | None) -> str:
    if current and PRELOAD in current:
        return current
    return PRELOAD + (":" + current if current else "")


# ----------------------------------------------------------------- child side: the bed


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _import_umockdev() -> Any:
    """Debian's python3-gi from a private directory appended to sys.path (never shadows venv packages)."""
    try:
        import gi
    except ImportError:
        shim = Path(tempfile.gettempdir()) / f"sanaq-gi-shim-{os.getuid()}"
        shim.mkdir(exist_ok=True)
        with contextlib.suppress(FileExistsError):
            (shim / "gi").symlink_to(DEBIAN_GI)
        sys.path.append(str(shim))
        import gi
    gi.require_version("UMockdev", "1.0")
    from gi.repository import UMockdev

    return UMockdev


class _BedServer:
    DISKS = tuple(f"sd{c}" for c in "bcdefghijklmnopqrstuvwxyz")

    def __init__(self, testbed: Any) -> None:
        self.tb = testbed
        self.root = testbed.get_root_dir()
        self.sticks: dict[str, dict[str, Any]] = {}
        self.port = 0

    def plug(self, image: str, serial: str | None, vendor: str, product: str, label: str | None,
             fs_type: str | None, extra_hid: bool, partitioned: bool, bus: str, with_devname: bool,
             disk: str | None) -> dict[str, Any]:
        disk = disk or next(d for d in self.DISKS if d not in self.sticks)
        if disk in self.sticks:
            raise ValueError(f"{disk} is plugged already")
        self.port += 1
        port, major, minor = self.port, 8, 16 * (ord(disk[-1]) - ord("a"))
        fs_name = f"{disk}1" if partitioned else disk
        dev = Path(self.root, "dev")
        dev.mkdir(exist_ok=True)
        shutil.copyfile(image, dev / fs_name)  # before add_device: the add uevent goes out at once
        if partitioned:
            (dev / disk).touch()
        for name in {fs_name, disk}:
            os.chmod(dev / name, 0o1644)  # sticky bit: the preload's stat() reports S_IFBLK
        paths: list[str] = []  # added devices, parents first
        hints: list[str] = []
        if bus == "usb":
            usb_path = f"pci0000:00/0000:00:14.0/usb1/1-{port}"
            attrs = ["idVendor", vendor, "idProduct", product, "bDeviceClass", "00", "manufacturer", "Samsung",
                     "product", "Galaxy Tab A"] + (["serial", serial] if serial is not None else [])
            paths.append(self.tb.add_device("usb", usb_path, None, attrs, [
                "DEVTYPE", "usb_device", "PRODUCT", f"{vendor}/{product}/100", "ID_BUS", "usb"]))
            interfaces = [("0", "08", "06", "50")] + ([("1", "03", "01", "01")] if extra_hid else [])
            for num, cls, sub, proto in interfaces:
                paths.append(self.tb.add_device(
                    "usb", f"{usb_path}/1-{port}:1.{num}", None,
                    ["bInterfaceNumber", f"0{num}", "bInterfaceClass", cls, "bInterfaceSubClass", sub,
                     "bInterfaceProtocol", proto],
                    ["DEVTYPE", "usb_interface", "INTERFACE", f"{int(cls, 16)}/{int(sub, 16)}/{int(proto, 16)}"]))
            host = f"{usb_path}/1-{port}:1.0/host{5 + port}/target{5 + port}:0:0/{5 + port}:0:0:0"
            hints = ["ID_BUS", "usb", "ID_VENDOR_ID", vendor, "ID_MODEL_ID", product]
        else:
            host = f"pci0000:00/0000:00:17.0/ata{port}/host{5 + port}/target{5 + port}:0:0/{5 + port}:0:0:0"
        size = str(os.path.getsize(image) // 512)
        fs_props = [k for k, v in (("ID_FS_TYPE", fs_type), ("ID_FS_LABEL", label)) if v is not None
                    for k in (k, v)] + (["ID_FS_USAGE", "filesystem", "ID_FS_UUID", "2A42-4E80"] if fs_type else [])
        disk_props = ["DEVTYPE", "disk", "MAJOR", str(major), "MINOR", str(minor), "DEVNAME", f"/dev/{disk}"]
        paths.append(self.tb.add_device(
            "block", f"{host}/block/{disk}", None, ["dev", f"{major}:{minor}", "size", size, "removable", "1"],
            disk_props + hints + (["ID_PART_TABLE_TYPE", "dos"] if partitioned else fs_props)))
        if partitioned:
            part_props = ["DEVTYPE", "partition", "MAJOR", str(major), "MINOR", str(minor + 1), "PARTN", "1"]
            if with_devname:
                part_props += ["DEVNAME", f"/dev/{fs_name}"]
            paths.append(self.tb.add_device(
                "block", f"{host}/block/{disk}/{fs_name}", None,
                ["dev", f"{major}:{minor + 1}", "size", size, "partition", "1", "start", "2048"],
                part_props + hints + fs_props))
        self.sticks[disk] = {"paths": paths, "names": [fs_name, disk]}
        return {"handle": disk, "devnode": f"/dev/{fs_name}", "disk_node": f"/dev/{disk}",
                "sys_path": paths[-1]}

    def unplug(self, handle: str) -> dict[str, Any]:
        stick = self.sticks.pop(handle)
        for path in reversed(stick["paths"]):  # children first, as the kernel does
            self.tb.uevent(path, "remove")
            self.tb.remove_device(path)
        for name in stick["names"]:  # remove_device leaves these; re-adding the name would abort
            for leftover in (Path(self.root, "sys", "block", name), Path(self.root, "dev", name)):
                if os.path.lexists(leftover):
                    leftover.unlink()
        return {}

    def reset(self) -> dict[str, Any]:
        for handle in list(self.sticks):
            self.unplug(handle)
        for name in os.listdir(self.root):  # sockets of monitors whose processes are gone
            if name.startswith("event"):
                Path(self.root, name).unlink()
        return {}


def _serve() -> int:
    try:
        with open("/proc/self/maps") as maps:
            if "libumockdev-preload" not in maps.read():
                raise RuntimeError(f"{PRELOAD} is not loaded (LD_PRELOAD={os.environ.get('LD_PRELOAD')!r})")
        umockdev = _import_umockdev()
        testbed = umockdev.Testbed.new()
    except Exception as e:
        _reply({"error": f"{type(e).__name__}: {e}"})
        return 2
    server = _BedServer(testbed)
    _reply({"root": server.root, "pid": os.getpid()})
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        try:
            _reply({"ok": True, **getattr(server, op)(**command)})
        except Exception as e:
            _reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
    return 0


# ----------------------------------------------------------------- child side: the source probe


def _probe() -> int:
    """Run ``UdevDeviceSource`` until stdin closes; print existing() and each event as JSON lines."""
    import asyncio
    import dataclasses

    import structlog

    from usb_ingest.udev_source import UdevDeviceSource

    structlog.configure(processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
                        logger_factory=structlog.PrintLoggerFactory(sys.stdout))

    def line(kind: str, **fields: Any) -> None:
        _reply({"event": kind, **fields})

    def as_dict(event: Any) -> dict[str, Any]:
        return {**dataclasses.asdict(event), "is_candidate": event.is_candidate}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        source = UdevDeviceSource(loop)
        line("probe.existing", devices=[as_dict(e) for e in source.existing()])
        done = asyncio.Event()
        loop.add_reader(sys.stdin.fileno(), lambda: None if sys.stdin.readline() else done.set())
        source.start(lambda e: line("probe.device", **as_dict(e)))
        line("probe.started")
        await done.wait()
        source.stop()
        source.stop()
        line("probe.stopped")

    asyncio.run(main())
    return 0


if __name__ == "__main__":
    sys.exit({"serve": _serve, "probe": _probe}[sys.argv[1]]())
