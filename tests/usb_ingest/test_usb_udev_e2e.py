"""End to end on the USB road: a plugged (umockdev) tablet -> ``sanaq-usb-ingest run`` -> a real gateway.

The daemon is the real program (``python -m usb_ingest run``) started inside
the umockdev bed (preload + ``UMOCKDEV_DIR``), so it finds devices through its
own pyudev monitor and reads ``/dev/sdX1`` as the export image. The gateway
runs in this process on 127.0.0.1 with a throwaway SQLite store; the station
and the tablets are enrolled by a real ``keys`` authority. Progress is followed
through the daemon's JSON log lines, never by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import sqlite3
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey
from pyfatfs.PyFat import PyFat
from pyfatfs.PyFatFS import PyFatFS

from keys import ProvisioningBundle
from keys.authority import Authority
from keys.enrollment import enroll_station, enroll_tablet
from tablet.fat_volume import fix_label_and_fsinfo, plan_volume
from tablet.generator import generate_sheets
from tablet.outbox_schema import StoredBatch
from tablet.usb_export import export_files, write_export_volume
from tests.gateway.harness import Gateway, World, start_gateway
from wire import VOLUME_LABEL, ManifestEntry, batch_file_name, key_id, make_manifest, parse_receipt, seal_batch

from .umockdev_bed import Stick, UmockdevBed

pytestmark = pytest.mark.umockdev

REPO = Path(__file__).resolve().parents[2]
STATION = "ST-01"
TABLETS = {"TAB-0001": "R58M000001", "TAB-0002": "R58M000002"}
ROAD = f"station:{STATION}"
WAIT_S = 30.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------- the enrolled world


@dataclass
class Enrolled:
    authority: Authority
    tablets: dict[str, ProvisioningBundle]
    station_dir: Path

    def gateway_world(self) -> World:
        a = self.authority
        return World(root=a.root_signing_key(), data=a.data_private_key(), receipt=a.gateway_signing_key())

    def batches(self, device_id: str, seqs: range, *, key: SigningKey | None = None) -> list[StoredBatch]:
        bundle = self.tablets[device_id]
        out = []
        for seq in seqs:
            sealed = now_ms()
            envelope = seal_batch(device_id=device_id, seq=seq, sheets=generate_sheets(seq, 2, device_id=device_id),
                                  sealed_at_ms=sealed, device_key=key or bundle.signing_key,
                                  data_public_key=bundle.data_public_key, ephemeral_secret=os.urandom(32))
            out.append(StoredBatch(seq, envelope, hashlib.sha256(envelope).digest(), 2, sealed))
        return out


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Enrolled]:
    base = tmp_path_factory.mktemp("usb-e2e")
    now, url = now_ms(), "https://gateway.invalid"
    with Authority.create(base / "authority", now_ms=now) as authority:
        tablets = {
            d: enroll_tablet(authority, base / d, device_id=d, usb_serial=serial, institution="AB-000001",
                             worker_id=f"W{d[-4:]}", gateway_url=url, now_ms=now)
            for d, serial in TABLETS.items()
        }
        station = enroll_station(authority, base / "station", station_id=STATION, gateway_url=url, now_ms=now)
        yield Enrolled(authority, tablets, station.path)


def export_image(path: Path, enrolled: Enrolled, device_id: str, batches: list[StoredBatch]) -> Path:
    """The volume exactly as the tablet writes it (``tablet.usb_export``)."""
    bundle = enrolled.tablets[device_id]
    write_export_volume(path, batches, device_id=device_id, usb_serial=TABLETS[device_id],
                        device_key=bundle.signing_key, now_ms=now_ms())
    return path


def manifest_first_image(path: Path, files: dict[str, bytes]) -> bytes:
    """A valid export volume whose manifest lies before the batches (so a cut can keep it)."""
    plan = plan_volume([len(d) for d in files.values()])
    path.write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = PyFat()
        pf.mkfs(str(path), fat_type=plan.pyfat_type, size=plan.size, label=VOLUME_LABEL)
        pf.close()
        fs = PyFatFS(str(path), read_only=False, preserve_case=False)
        try:
            fs.makedir("SANAQ")
            for name in sorted(files, key=lambda n: (not n.endswith("MANIFEST.SQM"), n)):
                fs.writebytes(name, files[name])
        finally:
            fs.close()
    fix_label_and_fsinfo(path, VOLUME_LABEL)
    return path.read_bytes()


# ---------------------------------------------------------------- the daemon and the gateway


class Daemon:
    """``python -m usb_ingest run`` inside the bed; its JSON log lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path) -> None:
        self.proc, self.stderr = proc, stderr
        self.lines: list[dict[str, Any]] = []

    async def wait_for(self, event: str, n: int = 1, **match: Any) -> list[dict[str, Any]]:
        """The first ``n`` log lines named ``event`` with fields ``match`` (reading on until there are ``n``)."""
        try:
            async with asyncio.timeout(WAIT_S):
                return await self._read_until(event, n, match)
        except TimeoutError:
            raise AssertionError(f"no {n} x {event} {match} within {WAIT_S} s\n{self.tail()}") from None

    async def _read_until(self, event: str, n: int, match: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.proc.stdout is not None
        while len(found := self.find(event, **match)) < n:
            raw = await self.proc.stdout.readline()
            if not raw:
                raise AssertionError(f"daemon exited (rc={await self.proc.wait()}) before {event}\n{self.tail()}")
            self.lines.append(json.loads(raw))
        return found[:n]

    def find(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [line for line in self.lines
                if line.get("event") == event and all(line.get(k) == v for k, v in match.items())]

    def tail(self) -> str:
        shown = [json.dumps(line, sort_keys=True) for line in self.lines[-25:]]
        return "\n".join(shown) + "\nstderr:\n" + self.stderr.read_text()[-3000:]

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(self.proc.wait(), WAIT_S)
        assert self.proc.stdout is not None
        self.lines += [json.loads(raw) for raw in (await self.proc.stdout.read()).splitlines() if raw.strip()]
        return rc


@dataclass
class Road:
    bed: UmockdevBed
    enrolled: Enrolled
    gateway: Gateway
    state_dir: Path
    config: Path
    tmp: Path

    def __post_init__(self) -> None:
        self.daemons: list[Daemon] = []

    async def start_daemon(self) -> Daemon:
        stderr = self.tmp / "daemon.stderr"
        env = self.bed.env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "usb_ingest", "run", "--config", str(self.config),
                cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=err,
                limit=1024 * 1024)
        daemon = Daemon(proc, stderr)
        self.daemons.append(daemon)
        await daemon.wait_for("usb.daemon.ready")
        return daemon

    def plug(self, image: Path, device_id: str, **kw: Any) -> Stick:
        return self.bed.plug(image, serial=kw.pop("serial", TABLETS.get(device_id)), **kw)

    def gateway_rows(self) -> list[tuple[str, int, str, bytes]]:
        with sqlite3.connect(f"file:{self.gateway.db_path}?mode=ro", uri=True) as db:
            return db.execute("SELECT device_id, seq, road, batch_hash FROM batches ORDER BY device_id, seq").fetchall()

    def custody_rows(self) -> list[tuple[str, str, int]]:
        with sqlite3.connect(f"file:{self.gateway.db_path}?mode=ro", uri=True) as db:
            return db.execute("SELECT station_id, device_id, batch_count FROM custody ORDER BY id").fetchall()

    def station_receipts(self) -> list[tuple[str, int, str, bytes]]:
        """The station's receipt log, each receipt verified under the gateway's receipt key."""
        keys = {key_id(self.enrolled.authority.gateway_public_key): self.enrolled.authority.gateway_public_key}
        lines = (self.state_dir / "receipts.jsonl").read_text().splitlines()
        receipts = [parse_receipt(base64.b64decode(json.loads(line)["receipt"]), keys) for line in lines]
        return [(r.device_id, r.seq, r.road, r.batch_hash) for r in receipts]

    def spooled_files(self) -> list[Path]:
        return sorted((self.state_dir / "spool" / "batches").glob("*"))


@pytest.fixture
async def road(usb_bed: UmockdevBed, enrolled: Enrolled, tmp_path: Path) -> AsyncIterator[Road]:
    gateway = await start_gateway(enrolled.gateway_world(), tmp_path / "census.db",
                                  snapshot=enrolled.authority.latest_snapshot())
    config = tmp_path / "usb-ingest.toml"
    config.write_text(
        f'station_bundle = "{enrolled.station_dir}"\ngateway_url = "{gateway.url}"\n'
        f'state_dir = "{tmp_path / "state"}"\nspool_min_free_bytes = 0\nlog_level = "info"\n'
        'language = "en"\n'  # the technician's messages are read in English here; test_l10n_station reads kk
        "[forward]\ninitial_backoff_s = 0.05\nmax_backoff_s = 0.5\nidle_poll_s = 1.0\n"
    )
    r = Road(usb_bed, enrolled, gateway, tmp_path / "state", config, tmp_path)
    try:
        yield r
    finally:
        for daemon in r.daemons:
            if daemon.proc.returncode is None:
                daemon.proc.kill()
                await daemon.proc.wait()
        await gateway.stop()


def expected_rows(batches: list[StoredBatch], device_id: str) -> list[tuple[str, int, str, bytes]]:
    return [(device_id, b.seq, ROAD, b.batch_hash) for b in batches]


# ---------------------------------------------------------------- the tests


async def test_present_and_hotplugged_tablets_reach_the_gateway_once(road: Road, tmp_path: Path) -> None:
    first = road.enrolled.batches("TAB-0001", range(1, 5))
    second = road.enrolled.batches("TAB-0002", range(1, 4))
    before = road.plug(export_image(tmp_path / "t1.img", road.enrolled, "TAB-0001", first), "TAB-0001")
    daemon = await road.start_daemon()  # finds the first tablet through existing()
    after = road.plug(export_image(tmp_path / "t2.img", road.enrolled, "TAB-0002", second), "TAB-0002")
    finished = {line["source"]: line for line in [
        *await daemon.wait_for("usb.pull.finished", source=before.devnode),
        *await daemon.wait_for("usb.pull.finished", source=after.devnode)]}
    assert finished[before.devnode]["outcome"] == finished[after.devnode]["outcome"] == "complete"
    await daemon.wait_for("usb.forward.delivered", n=7)
    await daemon.wait_for("usb.custody.delivered", n=2)
    assert road.gateway_rows() == expected_rows(first, "TAB-0001") + expected_rows(second, "TAB-0002")
    assert sorted(road.custody_rows()) == [(STATION, "TAB-0001", 4), (STATION, "TAB-0002", 3)]
    assert not any(line["duplicate"] for line in daemon.find("usb.forward.delivered"))
    assert road.spooled_files() == []  # every batch receipted and out of the spool
    assert sorted(road.station_receipts()) == expected_rows(first, "TAB-0001") + expected_rows(second, "TAB-0002")
    road.bed.unplug(after)
    await daemon.wait_for("usb.device.removed", devnode=after.devnode)
    # the same tablet plugged again: everything is recognised as delivered, nothing is sent twice
    again = road.plug(tmp_path / "t2.img", "TAB-0002", disk=after.handle)
    [line] = (await daemon.wait_for("usb.pull.finished", n=2, source=again.devnode))[1:]
    assert (line["spooled"], line["delivered"]) == (0, 3)
    assert await daemon.stop() == 0
    assert daemon.find("usb.daemon.stopped")
    assert len(daemon.find("usb.forward.delivered")) == 7
    assert len(road.gateway_rows()) == 7


async def test_unplug_mid_read_keeps_only_whole_batches_and_replug_resumes(road: Road, tmp_path: Path) -> None:
    n, cut_seq = 40, 30
    batches = road.enrolled.batches("TAB-0001", range(1, n + 1))
    files = export_files(batches, device_id="TAB-0001", usb_serial=TABLETS["TAB-0001"], created_at_ms=now_ms(),
                         device_key=road.enrolled.tablets["TAB-0001"].signing_key)
    full = tmp_path / "full.img"
    image = manifest_first_image(full, files)
    cut_name = f"SANAQ/{cut_seq:08d}.SQB"
    cut_at = image.index(files[cut_name]) + len(files[cut_name]) // 2
    cut = tmp_path / "cut.img"
    cut.write_bytes(image[:cut_at])  # what a reader still gets from a stick pulled out at that point
    daemon = await road.start_daemon()
    stick = road.plug(cut, "TAB-0001")
    await daemon.wait_for("usb.batch.spooled", device_id="TAB-0001")  # the volume is open, batches flow
    road.bed.unplug(stick)  # remove uevents while the pull runs
    [first] = await daemon.wait_for("usb.pull.finished", source=stick.devnode)
    assert first["outcome"] in ("interrupted", "partial")  # never "complete"
    assert first["spooled"] < cut_seq
    # nothing partial looks complete: what the station holds (spool, then gateway) is exactly the whole
    # batches 1..k it reported, byte for byte; no unfinished write is left behind
    by_seq = {b.seq: b for b in batches}
    taken: set[int] = set()
    for path in road.spooled_files():
        assert not path.name.startswith("."), f"unfinished write left in the spool: {path.name}"
        device_id, seq, digest = path.name.removesuffix(".sqb").split(".")
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # receipted meanwhile: the gateway query below sees it
            continue
        assert (device_id, digest, data) == ("TAB-0001", by_seq[int(seq)].batch_hash.hex(), by_seq[int(seq)].envelope)
        taken.add(int(seq))
    for device_id, seq, via, digest in road.gateway_rows():
        assert (device_id, via, digest) == ("TAB-0001", ROAD, by_seq[seq].batch_hash)
        taken.add(seq)
    assert taken == set(range(1, first["spooled"] + 1))
    # plugged again (same name, whole volume): the rest is taken, nothing twice
    again = road.plug(full, "TAB-0001", disk=stick.handle)
    [second] = (await daemon.wait_for("usb.pull.finished", n=2, source=again.devnode))[1:]
    assert second["outcome"] == "complete"
    assert first["spooled"] + second["spooled"] == n
    assert second["held"] + second["delivered"] == first["spooled"]
    await daemon.wait_for("usb.forward.delivered", n=n)
    assert road.gateway_rows() == expected_rows(batches, "TAB-0001")
    assert not any(line["duplicate"] for line in daemon.find("usb.forward.delivered"))


def forged_manifest(batches: list[StoredBatch], device_id: str, key: SigningKey) -> bytes:
    entries = [ManifestEntry(batch_file_name(b.seq), b.seq, b.size, b.batch_hash) for b in batches]
    return make_manifest(device_id=device_id, usb_serial=TABLETS.get(device_id, "X"), created_at_ms=now_ms(),
                         batches=entries, device_key=key)


@pytest.mark.parametrize(
    ("case", "claimed", "code"),
    [
        ("manifest and batches signed by a stranger, claiming an enrolled tablet", "TAB-0002", "key-mismatch"),
        ("enrolled key, claiming the other enrolled tablet", "TAB-0002", "key-mismatch"),
        ("a stranger claiming an unknown tablet", "TAB-9999", "unknown-tablet"),
    ],
)
async def test_volume_signed_by_the_wrong_key_is_refused(
    road: Road, tmp_path: Path, case: str, claimed: str, code: str
) -> None:
    stranger = SigningKey(hashlib.sha256(case.encode()).digest())
    key = road.enrolled.tablets["TAB-0001"].signing_key if case.startswith("enrolled") else stranger
    batches = road.enrolled.batches("TAB-0001", range(1, 3), key=key)
    files = {f"SANAQ/{b.seq:08d}.SQB": b.envelope for b in batches}
    files["SANAQ/MANIFEST.SQM"] = forged_manifest(batches, claimed, key)
    image = tmp_path / "forged.img"
    manifest_first_image(image, files)
    daemon = await road.start_daemon()
    stick = road.plug(image, claimed, serial=TABLETS["TAB-0002"])  # the enrolled tablet's serial: a hint only
    [finished] = await daemon.wait_for("usb.pull.finished", source=stick.devnode)
    assert (finished["outcome"], finished["spooled"]) == ("refused", 0)
    [event] = daemon.find("usb.security.event", source=stick.devnode)
    assert event["code"] == code
    assert road.spooled_files() == []
    # a genuine tablet afterwards still goes through: the refusal did not disturb the daemon
    good = road.enrolled.batches("TAB-0001", range(1, 2))
    ok = road.plug(export_image(tmp_path / "good.img", road.enrolled, "TAB-0001", good), "TAB-0001")
    await daemon.wait_for("usb.pull.finished", source=ok.devnode, outcome="complete")
    await daemon.wait_for("usb.forward.delivered", n=1)
    assert road.gateway_rows() == expected_rows(good, "TAB-0001")


async def test_tablet_with_an_extra_hid_interface_is_refused_unread(road: Road, tmp_path: Path) -> None:
    batches = road.enrolled.batches("TAB-0001", range(1, 3))
    image = export_image(tmp_path / "t1.img", road.enrolled, "TAB-0001", batches)
    daemon = await road.start_daemon()
    hid = road.plug(image, "TAB-0001", extra_hid=True)
    [event] = await daemon.wait_for("usb.security.event", devnode=hid.devnode)
    assert event["kind"] == "hid-interface"
    plain = road.plug(image, "TAB-0001")  # the same volume on a plain mass-storage device is taken
    await daemon.wait_for("usb.pull.finished", source=plain.devnode, outcome="complete")
    await daemon.wait_for("usb.forward.delivered", n=2)
    assert not daemon.find("usb.pull.started", source=hid.devnode)  # the HID device was never read
    assert road.gateway_rows() == expected_rows(batches, "TAB-0001")
    status = json.loads((road.state_dir / "status.json").read_text())
    shown = {d["devnode"]: d for d in status["devices"]}
    assert shown[hid.devnode]["state"] == "refused"


async def test_replug_right_after_unplug_is_pulled(road: Road, tmp_path: Path) -> None:
    batches = road.enrolled.batches("TAB-0001", range(1, 41))
    image = export_image(tmp_path / "t1.img", road.enrolled, "TAB-0001", batches)
    daemon = await road.start_daemon()
    stick = road.plug(image, "TAB-0001")
    await daemon.wait_for("usb.batch.spooled", device_id="TAB-0001")
    road.bed.unplug(stick)
    again = road.plug(image, "TAB-0001", disk=stick.handle)  # plugged back at once, same device name
    finished = await daemon.wait_for("usb.pull.finished", n=2, source=again.devnode)
    assert finished[-1]["outcome"] == "complete"
    await daemon.wait_for("usb.forward.delivered", n=40)
    assert road.gateway_rows() == expected_rows(batches, "TAB-0001")
