"""The services' code under the seccomp filters their units ask for (``sandbox_launch``).

``MemoryDenyWriteExecute=``, ``SystemCallFilter=`` (kill on anything else),
``RestrictAddressFamilies=``, ``NoNewPrivileges=`` and an empty capability
bounding set, rebuilt from the shipped unit files. The negative table proves
the filters are really in force, so that the positive runs mean something:
the real gateway serving a signed batch over HTTPS, and the ingest side's
libraries (libudev through pyudev with a netlink monitor, FAT parsing with
pyfatfs, TLS client) doing their work.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from keys.tls import client_ssl_context
from tablet.generator import generate_sheets
from tests.gateway.harness import World, sign
from wire import parse_receipt

from .service_harness import (
    REPO,
    SYSTEMD_DIR,
    NotifySocket,
    gateway_process,
    listening_port,
    stderr_of,
    wait_ready,
)
from .service_harness import write_gateway_files as write_files

GATEWAY_UNIT = SYSTEMD_DIR / "sanaq-gateway.service"
INGEST_UNIT = SYSTEMD_DIR / "sanaq-usb-ingest.service"
SIGSYS = -signal.SIGSYS


def launcher(unit: Path, groups: Path) -> list[str]:
    return ["-m", "tests.systemd.sandbox_launch", str(unit), str(groups)]


def run_sandboxed(unit: Path, groups: Path, code: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *launcher(unit, groups), "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


PROBES = {
    "wx-mmap": "import mmap\nmmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)",
    "netlink": "import socket\nsocket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15).close()",
    "packet": "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()",
    "affinity": "import os\nos.sched_setaffinity(0, os.sched_getaffinity(0))",  # @resources
    "chroot": "import os\nos.chroot('/')",  # @privileged
    "no-caps": "lines = [x.split() for x in open('/proc/self/status') if x.startswith('Cap')]\n"
    "caps = {k.rstrip(':'): int(v, 16) for k, v in lines}\n"
    "assert caps['CapEff'] == caps['CapPrm'] == caps['CapBnd'] == 0, caps",
}
PROBE_CASES = [
    # (unit, probe, expected: "ok", "SIGSYS" or an exception name printed by the probe wrapper)
    (GATEWAY_UNIT, "wx-mmap", "PermissionError"),
    (INGEST_UNIT, "wx-mmap", "PermissionError"),
    (GATEWAY_UNIT, "netlink", "OSError:97"),  # EAFNOSUPPORT
    (INGEST_UNIT, "netlink", "ok"),
    (INGEST_UNIT, "packet", "OSError:97"),
    (GATEWAY_UNIT, "affinity", "SIGSYS"),
    (INGEST_UNIT, "chroot", "SIGSYS"),
    (GATEWAY_UNIT, "no-caps", "ok"),
]


@pytest.mark.parametrize(
    ("unit", "probe", "expected"), PROBE_CASES, ids=[f"{u.stem}-{p}" for u, p, _ in PROBE_CASES]
)
def test_filters_are_in_force(syscall_groups: Path, unit: Path, probe: str, expected: str) -> None:
    code = (
        "try:\n"
        + "".join(f"    {line}\n" for line in PROBES[probe].splitlines())
        + "except OSError as e:\n"
        "    print(f'OSError:{e.errno}' if type(e) is OSError else type(e).__name__)\n"
        "else:\n    print('ok')\n"
    )
    done = run_sandboxed(unit, syscall_groups, code)
    got = "SIGSYS" if done.returncode == SIGSYS else done.stdout.strip()
    assert got == expected, done.stderr[-2000:]


def test_ingest_libraries_work_under_the_ingest_filters(syscall_groups: Path, tmp_path: Path) -> None:
    if shutil.which("mkfs.vfat") is None:
        pytest.fail("mkfs.vfat is missing: apt-get install dosfstools (make setup does)")
    image = tmp_path / "export.img"
    with image.open("wb") as fh:
        fh.truncate(8 * 1024 * 1024)
    subprocess.run(["mkfs.vfat", "-n", "SANAQEXPORT", str(image)], check=True, capture_output=True, timeout=60)
    code = f"""
import ssl, pyudev
from pyfatfs.PyFat import PyFat
ctx = pyudev.Context()
blocks = list(ctx.list_devices(subsystem="block"))
monitor = pyudev.Monitor.from_netlink(ctx)
monitor.filter_by("block")
monitor.start()
assert monitor.poll(timeout=0) is None
fat = PyFat()
fat.open({str(image)!r}, read_only=True)
label = fat.bpb_header["BS_VolLab"].decode("ascii")
fat.parse_root_dir()
fat.close()
ssl.create_default_context()
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)  # the spool's group flush (ADR 0007): syncfs(2) must be allowed
fd = os.open({str(tmp_path)!r}, os.O_RDONLY | os.O_DIRECTORY)
assert libc.syncfs(fd) == 0, ctypes.get_errno()
os.close(fd)
print("ok", label.strip())
"""
    done = run_sandboxed(INGEST_UNIT, syscall_groups, code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", "SANAQEXPORT"]


async def test_gateway_ingests_over_https_under_its_unit_filters(
    world: World, tmp_path: Path, syscall_groups: Path
) -> None:
    files = write_files(world, tmp_path)
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        async with gateway_process(
            files, notify=ns.path, watchdog_usec=2_000_000, launcher=launcher(GATEWAY_UNIT, syscall_groups)
        ) as proc:
            ready = (await wait_ready(ns, proc, files))[-1]
            url = f"https://127.0.0.1:{listening_port(ready)}/v1/batches"
            body = world.batch("TAB-0001", 1, generate_sheets(7, 3, device_id="TAB-0001"))
            headers = sign("POST", url, world.tablets["TAB-0001"], body, "application/vnd.sanaq.batch")
            connector = aiohttp.TCPConnector(ssl=client_ssl_context(files.ca_cert))
            async with aiohttp.ClientSession(connector=connector) as s, s.post(url, data=body, headers=headers) as r:
                assert r.status == 200, await r.text()
                answer = await r.json()
            receipt = parse_receipt(base64.b64decode(answer["receipt"]), world.gateway_keys)
            assert (receipt.device_id, receipt.seq) == ("TAB-0001", 1)
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
            assert code == 0, f"exit {code} (SIGSYS is {SIGSYS}); stderr:\n{stderr_of(files)}"
    finally:
        ns.close()
