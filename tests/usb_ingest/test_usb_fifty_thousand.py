"""A tablet holding 50,000 sheets on the USB road, end to end (issue 20, item 3).

The image is a real FAT export volume of 5,000 batches of 10 household sheets
written by the tablet's own writer (``bench.usb_pull.seal_batches`` and
``tablet.usb_export``), built once for this module. It is plugged under
umockdev into the real ``sanaq-usb-ingest run`` process, which forwards to a
real gateway on 127.0.0.1 (``test_usb_udev_e2e``'s road, shipped grouping of
128 batches / 16 MiB).

* Memory: the daemon's peak resident size (``VmHWM`` of its
  ``/proc/PID/status``, read from this process, so pytest's own memory does
  not count) stays under its resting size plus
  ``VolumeLimits.pull_memory_bound(files)`` - the bound ADR 0007 and
  docs/operations.md state.
* The first batch is stored by the gateway (its store, queried) while the pull
  still reads: the status file, read after the gateway holds a row, shows the
  tablet still being read with batches left.
* An unplug mid-pull, a SIGKILL of the service mid-pull (twice, at other
  points) and one right after the pull ended; then plugged in again: every
  batch is stored by the gateway exactly once, the spool never holds a seq
  twice, and the station's receipts name each batch once; every stored batch
  is named by a custody record, the two killed pulls' by recovery records.

Slow (2-3 min on 2 cores): marked ``slow``; ``make test`` runs it in its slow step.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.usb_pull import seal_batches
from keys import ProvisioningBundle
from tablet.usb_export import write_export_volume
from tests.gateway.harness import until
from usb_ingest.config import VolumeLimits
from usb_ingest.volume_fat import FatExportVolume
from wire import CustodyRecord, parse_custody

from . import test_usb_udev_e2e as e2e
from .test_usb_udev_e2e import ROAD, STATION, TABLETS, Daemon, Enrolled, Road, now_ms

pytestmark = [pytest.mark.umockdev, pytest.mark.slow]

enrolled = e2e.enrolled  # the e2e road's fixtures, as they are
road = e2e.road

DEVICE = "TAB-0001"
SHEETS, PER_BATCH = 50_000, 10
N = SHEETS // PER_BATCH
WAIT_S = 240.0  # one step of a 5,000-batch pull and forward on a loaded 2-core machine


@dataclass(frozen=True)
class BigTablet:
    image: Path
    rows: list[tuple[str, int, str, bytes]]  # what the gateway must hold afterwards, each once
    bound_kib: int  # VolumeLimits.pull_memory_bound for this volume


def fat_bytes(image: Path) -> int:
    """The size of one FAT of the image (its boot sector: bytes per sector x sectors per FAT)."""
    with image.open("rb") as f:
        boot = f.read(512)
    (bps,) = struct.unpack_from("<H", boot, 11)
    (fat16,) = struct.unpack_from("<H", boot, 22)
    (fat32,) = struct.unpack_from("<I", boot, 36)
    return int(bps * (fat16 or fat32))


@pytest.fixture(scope="module")
def big_tablet(enrolled: Enrolled, tmp_path_factory: pytest.TempPathFactory) -> BigTablet:
    bundle = enrolled.tablets[DEVICE]
    now = now_ms()
    batches = seal_batches(DEVICE, bundle.signing_key, bundle.data_public_key, SHEETS, PER_BATCH, now)
    image = tmp_path_factory.mktemp("fifty-thousand") / "tab.img"
    write_export_volume(image, batches, device_id=DEVICE, usb_serial=TABLETS[DEVICE], device_key=bundle.signing_key,
                        now_ms=now)
    with FatExportVolume.open(str(image), VolumeLimits()) as volume:
        manifest = len(volume.read_manifest())
    bound = VolumeLimits().pull_memory_bound(N, fat_bytes=fat_bytes(image), manifest_bytes=manifest)
    return BigTablet(image, [(DEVICE, b.seq, ROAD, b.batch_hash) for b in batches], bound // 1024)


@pytest.fixture(autouse=True)
def _patient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e2e, "WAIT_S", WAIT_S)  # Daemon.wait_for reads it at each call


def vm_kib(pid: int, field: str) -> int:
    """``VmRSS`` / ``VmHWM`` (KiB) of a live process, from its ``/proc/PID/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def gateway_count(r: Road) -> int:
    with sqlite3.connect(f"file:{r.gateway.db_path}?mode=ro", uri=True) as db:
        (n,) = db.execute("SELECT count(*) FROM batches WHERE device_id = ?", (DEVICE,)).fetchone()
    return int(n)


def custody_records(r: Road) -> list[CustodyRecord]:
    """The custody records the gateway stored, verified under the station's key."""
    key = ProvisioningBundle.load(r.enrolled.station_dir).public_key
    with sqlite3.connect(f"file:{r.gateway.db_path}?mode=ro", uri=True) as db:
        return [parse_custody(bytes(rec), key) for (rec,) in db.execute("SELECT record FROM custody ORDER BY id")]


def spool_seqs(r: Road) -> list[int]:
    """Seqs of the batches the spool holds (pending or rejected), one per entry; staged temp files excluded."""
    root = r.state_dir / "spool"
    names = [p.name for d in ("batches", "rejected") if (root / d).is_dir() for p in (root / d).iterdir()
             if p.name.endswith(".sqb") and not p.name.startswith(".")]
    return [int(name.split(".")[1]) for name in names]


def assert_no_duplicate_in_spool(r: Road) -> None:
    twice = [seq for seq, k in Counter(spool_seqs(r)).items() if k > 1]
    assert not twice, f"the spool holds these seqs twice: {twice[:10]}"


def resting_kib(daemon: Daemon) -> int:
    """The service's resident KiB at rest: ready, no tablet read yet."""
    return vm_kib(daemon.proc.pid, "VmRSS")


def assert_within_bound(daemon: Daemon, rest_kib: int, bound_kib: int) -> int:
    peak = vm_kib(daemon.proc.pid, "VmHWM")
    assert peak - rest_kib <= bound_kib, f"peak {peak} KiB = rest {rest_kib} + {peak - rest_kib} > bound {bound_kib}"
    return peak


async def sigkill(daemon: Daemon) -> None:
    daemon.proc.send_signal(signal.SIGKILL)
    assert await daemon.proc.wait() == -signal.SIGKILL


async def test_fifty_thousand_sheets_in_bounded_memory_forwarded_while_the_pull_reads(
    road: Road, big_tablet: BigTablet
) -> None:
    daemon = await road.start_daemon()
    rest, bound = resting_kib(daemon), big_tablet.bound_kib
    stick = road.plug(big_tablet.image, DEVICE)
    await until(lambda: gateway_count(road) > 0, timeout_s=WAIT_S, what="the gateway stores a first batch")
    # the gateway holds a batch; the service's status (written at every change of state, and at the last batch)
    # still shows the tablet being read with batches left: the first batch was stored before the pull ended
    status = json.loads((road.state_dir / "status.json").read_text())
    [shown] = [d for d in status["devices"] if d["devnode"] == stick.devnode]
    assert shown["state"] == "reading" and shown["batches_done"] < shown["batches_total"] == N, shown
    [finished] = await daemon.wait_for("usb.pull.finished", source=stick.devnode)
    assert (finished["outcome"], finished["spooled"]) == ("complete", N)
    await daemon.wait_for("usb.custody.delivered")
    await until(lambda: gateway_count(road) == N, timeout_s=WAIT_S, what=f"the gateway holds all {N} batches")
    peak = assert_within_bound(daemon, rest, bound)
    assert road.gateway_rows() == big_tablet.rows  # every batch once, 50,000 sheets
    assert road.custody_rows() == [(STATION, DEVICE, N)]
    with sqlite3.connect(f"file:{road.gateway.db_path}?mode=ro", uri=True) as db:
        assert db.execute("SELECT count(*) FROM sheets").fetchone() == (SHEETS,)
    assert await daemon.stop() == 0
    assert not any(line["duplicate"] for line in daemon.find("usb.forward.delivered"))
    print(f"\n50,000 sheets: service at rest {rest} KiB, peak {peak} KiB (+{peak - rest} KiB, bound +{bound} KiB)")


async def test_fifty_thousand_sheets_cut_by_unplug_and_sigkill_are_stored_exactly_once(
    road: Road, big_tablet: BigTablet
) -> None:
    # 1. unplugged mid-pull
    a = await road.start_daemon()
    rest, bound = resting_kib(a), big_tablet.bound_kib
    stick = road.plug(big_tablet.image, DEVICE)
    await a.wait_for("usb.batch.spooled", device_id=DEVICE, seq=600)
    road.bed.unplug(stick)
    [cut] = await a.wait_for("usb.pull.finished", source=stick.devnode)
    assert cut["outcome"] == "interrupted" and 600 <= cut["spooled"] < N, cut
    assert_no_duplicate_in_spool(road)
    # 2. plugged in again, the service SIGKILLed while it reads (a third of the way through the rest)
    stick = road.plug(big_tablet.image, DEVICE, disk=stick.handle)
    first_kill = cut["spooled"] + (N - cut["spooled"]) // 3
    await a.wait_for("usb.batch.spooled", device_id=DEVICE, seq=first_kill)
    assert_within_bound(a, rest, bound)
    await sigkill(a)
    assert_no_duplicate_in_spool(road)
    # 3. started again: the plugged tablet is found at start and read on; killed again, halfway through what
    # is left (the killed process may have sealed a group or two after its last line read here)
    held = max([*spool_seqs(road), *(seq for _, seq, _, _ in road.gateway_rows())])
    assert held < N - 256, f"the first kill came too late to cut the pull again ({held} of {N} held)"
    b = await road.start_daemon()
    rest, bound = resting_kib(b), big_tablet.bound_kib
    second_kill = held + (N - held) // 2
    await b.wait_for("usb.batch.spooled", device_id=DEVICE, seq=second_kill)
    assert_within_bound(b, rest, bound)
    await sigkill(b)
    assert_no_duplicate_in_spool(road)
    # 4. again; killed as soon as its pull has ended, while batches still go to the gateway
    c = await road.start_daemon()
    rest, bound = resting_kib(c), big_tablet.bound_kib
    [done] = await c.wait_for("usb.pull.finished", source=stick.devnode)
    assert done["outcome"] == "complete", done
    assert_within_bound(c, rest, bound)
    await sigkill(c)
    assert_no_duplicate_in_spool(road)
    # 5. once more: nothing is left to read, the rest is forwarded
    d = await road.start_daemon()
    [last] = await d.wait_for("usb.pull.finished", source=stick.devnode)
    assert (last["outcome"], last["spooled"]) == ("complete", 0)
    await until(lambda: gateway_count(road) == N, timeout_s=WAIT_S, what=f"the gateway holds all {N} batches")
    await until(lambda: not spool_seqs(road), timeout_s=WAIT_S, what="the spool is empty")
    custody_dir = road.state_dir / "spool" / "custody"  # custody records are sent after the batches of a pass
    await until(lambda: not list(custody_dir.glob("*.sqc")), timeout_s=WAIT_S, what="every custody record sent")
    assert await d.stop() == 0
    assert road.gateway_rows() == big_tablet.rows  # each batch stored exactly once
    with sqlite3.connect(f"file:{road.gateway.db_path}?mode=ro", uri=True) as db:
        assert db.execute("SELECT count(*) FROM sheets").fetchone() == (SHEETS,)
    receipts = Counter(seq for _, seq, _, _ in road.station_receipts())
    assert sorted(receipts) == list(range(1, N + 1))
    assert max(receipts.values()) == 1, [s for s, k in receipts.items() if k > 1][:10]
    # no batch was reported spooled twice by the four processes (a batch sealed just before a kill, unlogged,
    # is found held by the next pull, not taken again)
    spooled = Counter(line["seq"] for x in (a, b, c, d) for line in x.find("usb.batch.spooled", device_id=DEVICE))
    assert max(spooled.values()) == 1, [s for s, k in spooled.items() if k > 1][:10]
    # custody: every stored batch is named by a custody record at the gateway; the two pulls killed mid-read were
    # named by recovery records signed when the next process started (ADR 0007), the unplugged and the finished
    # pulls by their own
    records = custody_records(road)
    named = Counter(seq for r in records for seq, _ in r.batches)
    unnamed = sorted(set(range(1, N + 1)) - set(named))
    assert not unnamed, (unnamed[:3], unnamed[-3:], len(unnamed), [x.find("usb.custody.recovered") for x in (b, c, d)],
                         [(len(r.batches), r.recovered_at_ms) for r in records])
    recovered = [r for r in records if r.is_recovery]
    assert len(recovered) == 2, (recovered, [x.find("usb.custody.recovered") for x in (b, c, d)])
    assert len(b.find("usb.custody.recovered", kind="recovery")) == 1
    assert len(c.find("usb.custody.recovered", kind="recovery")) == 1
    print(f"\npulls: unplugged after {cut['spooled']}, killed after seq {first_kill} and {second_kill}, and after "
          f"the pull ended; {sum(spooled.values())} batches logged spooled, each stored once")
