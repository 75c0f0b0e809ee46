"""Pulling a volume: what is verified, what is spooled, and every bad input of issue #5 refused precisely."""

from __future__ import annotations

import errno
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from structlog.testing import capture_logs

from usb_ingest.config import VolumeLimits
from usb_ingest.puller import PullReport
from usb_ingest.station import Station
from usb_ingest.volume_fat import FatExportVolume
from wire import UsbHints, parse_custody

from .images import (
    DAY_MS,
    Env,
    StoredBatch,
    export,
    fat_edit,
    fat_image,
    now_ms,
    patch_image,
    rename_long_name,
    seal,
    serial_of,
)

SEQS = range(1, 5)

pytestmark = pytest.mark.usefixtures("_logs_unfiltered")


@pytest.fixture
def station(env: Env) -> Iterator[Station]:
    s = Station.open(env.config())
    yield s
    s.close()


def spooled_seqs(station: Station) -> list[tuple[str, int]]:
    return [(e.device_id, e.seq) for e in station.spool.pending_batches()]


def test_a_good_volume_is_verified_spooled_and_custody_recorded(env: Env, station: Station, tmp_path: Path) -> None:
    image = tmp_path / "tab1.img"
    envs = export(env, image, "TAB-0001", SEQS)
    hints = UsbHints("18d1", "4ee7", serial_of("TAB-0001"))
    with capture_logs() as logs:
        report = station.pull_volume(str(image), hints=hints)
    assert report.outcome == "complete"
    assert report.device_id == "TAB-0001"
    assert report.spooled == (1, 2, 3, 4)
    assert report.problems == ()
    assert report.safe_to_unplug
    assert spooled_seqs(station) == [("TAB-0001", s) for s in SEQS]
    for entry in station.spool.pending_batches():
        assert station.spool.read(entry) == envs[entry.seq]  # exactly the verified bytes
        assert entry.path.stat().st_mode & 0o777 == 0o600
    [custody] = station.spool.pending_custody()
    record = parse_custody(station.spool.read(custody), station.bundle.public_key)
    assert record.station_id == "ST-01"
    assert record.device_id == "TAB-0001"
    assert record.batches == tuple((s, hashlib.sha256(envs[s]).digest()) for s in SEQS)
    assert record.usb == hints
    events = [e["event"] for e in logs]
    assert events.count("usb.batch.spooled") == 4
    assert "usb.custody.spooled" in events
    assert "usb.hint.serial_mismatch" not in events
    view = station.board.view
    assert view.devices[0].state == "done"
    assert "You may unplug" in view.devices[0].message
    assert view.spool_pending == 4


def test_replugging_takes_nothing_twice(env: Env, station: Station, tmp_path: Path) -> None:
    image = tmp_path / "tab1.img"
    export(env, image, "TAB-0001", SEQS)
    station.pull_volume(str(image))
    before = {p.name: p.stat().st_mtime_ns for p in station.spool.batches_dir.iterdir()}
    again = station.pull_volume(str(image))
    assert again.outcome == "complete"
    assert again.spooled == ()
    assert again.already_held == (1, 2, 3, 4)
    assert {p.name: p.stat().st_mtime_ns for p in station.spool.batches_dir.iterdir()} == before


def test_a_stopped_pull_keeps_what_is_complete_and_the_next_one_finishes(
    env: Env, station: Station, tmp_path: Path
) -> None:
    image = tmp_path / "tab1.img"
    export(env, image, "TAB-0001", SEQS)
    asked: list[int] = []

    def stop_after_two() -> bool:  # asked before each batch: two are staged, then the pull is stopped
        asked.append(len(station.spool.pending_batches()))
        return len(asked) > 2

    first = station.pull_volume(str(image), should_stop=stop_after_two)
    assert first.outcome == "interrupted"
    assert asked == [0, 0, 0]  # staged batches are not spooled before their group is sealed
    assert first.spooled == (1, 2)  # ... which the stop does before it reports
    assert not first.safe_to_unplug
    assert station.board.view.devices[0].state == "interrupted"
    assert len(station.spool.pending_custody()) == 1  # custody for what was taken
    second = station.pull_volume(str(image))
    assert (second.outcome, second.spooled, second.already_held) == ("complete", (3, 4), (1, 2))
    assert spooled_seqs(station) == [("TAB-0001", s) for s in SEQS]


class _DyingDevice(io.FileIO):
    """A block device that fails with EIO after ``budget`` bytes: what an unplug mid-transfer looks like."""

    budget = 0

    def read(self, size: int = -1) -> bytes:
        if self.budget <= 0 or size > self.budget:
            raise OSError(errno.EIO, "Input/output error")
        data = super().read(size)
        self.budget -= len(data)
        return data


def test_unplug_mid_transfer_keeps_complete_batches_only(env: Env, station: Station, tmp_path: Path) -> None:
    image = tmp_path / "tab1.img"
    envs = export(env, image, "TAB-0001", SEQS)
    with _DyingDevice(image, "r") as probe:  # how many bytes up to and including the manifest
        probe.budget = 1 << 40
        with FatExportVolume.open(probe, VolumeLimits()) as vol:
            vol.read_manifest()
        structure = (1 << 40) - probe.budget
    with _DyingDevice(image, "r") as dev:
        dev.budget = structure + len(envs[1]) + len(envs[2]) // 2  # the plug is pulled inside batch 2
        report = station.pull_volume(dev, devnode="/dev/sdz1")  # type: ignore[arg-type]
    assert report.outcome == "interrupted"
    assert report.spooled == (1,)
    assert report.problems[-1].code == "device-gone"
    assert [p.name for p in station.spool.batches_dir.iterdir() if p.name.startswith(".")] == []
    for entry in station.spool.pending_batches():
        assert station.spool.read(entry) == envs[entry.seq]
    rest = station.pull_volume(str(image))
    assert rest.outcome == "complete"
    assert sorted(rest.spooled + rest.already_held) == [1, 2, 3, 4]


# ---- every bad input, as a table ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    make: Callable[[Env, Station, Path], None]
    outcome: str
    code: str
    kind: str | None = None
    spooled: tuple[int, ...] = ()
    security: bool = False


def _edit(env: Env, image: Path, edit: Callable[[object], None], seqs: range = SEQS) -> None:
    export(env, image, "TAB-0001", seqs)
    with fat_edit(image) as fs:
        edit(fs)


def _replace(fs: object, name: str, data: bytes) -> None:
    fs.remove(name)  # type: ignore[attr-defined]  # pyfatfs 1.1 cannot overwrite a file in place
    fs.writebytes(name, data)  # type: ignore[attr-defined]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def no_manifest(env: Env, st: Station, image: Path) -> None:
    _edit(env, image, lambda fs: fs.remove("SANAQ/MANIFEST.SQM"))  # type: ignore[attr-defined]


def plain_stick(env: Env, st: Station, image: Path) -> None:
    fat_image(image, {"DCIM/IMG0001.JPG": b"\xff\xd8" * 100})


def manifest_bad_signature(env: Env, st: Station, image: Path) -> None:
    def edit(fs: object) -> None:
        raw = fs.readbytes("SANAQ/MANIFEST.SQM")  # type: ignore[attr-defined]
        _replace(fs, "SANAQ/MANIFEST.SQM", _flip(raw, len(raw) - 10))

    _edit(env, image, edit)


def manifest_garbage(env: Env, st: Station, image: Path) -> None:
    _edit(env, image, lambda fs: _replace(fs, "SANAQ/MANIFEST.SQM", b"SNQM" + b"\x01" * 40))


def revoked_tablet(env: Env, st: Station, image: Path) -> None:
    export(env, image, "TAB-0002", SEQS)
    env.authority.registry.revoke("TAB-0002", reason="stolen", now_ms=now_ms())
    st.trust.accept(env.publish())


def lost_tablet(env: Env, st: Station, image: Path) -> None:
    export(env, image, "TAB-0002", SEQS)
    env.authority.registry.mark_lost("TAB-0002", reason="left in a taxi", now_ms=now_ms())
    st.trust.accept(env.publish())


def unknown_tablet(env: Env, st: Station, image: Path) -> None:
    export(env, image, "TAB-9999", SEQS, key=SigningKey.generate(), usb_serial="SER-TAB-9999")


def impostor_with_enrolled_serial(env: Env, st: Station, image: Path) -> None:
    """A tablet-like device claiming TAB-0001 and its USB serial, but holding another key."""
    export(env, image, "TAB-0001", SEQS, key=SigningKey.generate(), usb_serial=serial_of("TAB-0001"))


def batch_tampered(env: Env, st: Station, image: Path) -> None:
    def edit(fs: object) -> None:
        raw = fs.readbytes("SANAQ/00000002.SQB")  # type: ignore[attr-defined]
        _replace(fs, "SANAQ/00000002.SQB", _flip(raw, 200))

    _edit(env, image, edit)


def batch_truncated(env: Env, st: Station, image: Path) -> None:
    def edit(fs: object) -> None:
        raw = fs.readbytes("SANAQ/00000002.SQB")  # type: ignore[attr-defined]
        _replace(fs, "SANAQ/00000002.SQB", raw[:-100])

    _edit(env, image, edit)


def batch_missing(env: Env, st: Station, image: Path) -> None:
    _edit(env, image, lambda fs: fs.remove("SANAQ/00000002.SQB"))  # type: ignore[attr-defined]


def batch_extra(env: Env, st: Station, image: Path) -> None:
    rogue = seal(env, "TAB-0001", 9)
    _edit(env, image, lambda fs: fs.writebytes("SANAQ/00000009.SQB", rogue))  # type: ignore[attr-defined]


def batch_named_dotdot(env: Env, st: Station, image: Path) -> None:
    rogue = seal(env, "TAB-0001", 9)
    _edit(env, image, lambda fs: fs.writebytes("SANAQ/ab00000009.SQB", rogue))  # type: ignore[attr-defined]
    patch_image(image, lambda img, geo: rename_long_name(img, geo, "../00000009.SQB"))


def batch_forged_but_listed(env: Env, st: Station, image: Path) -> None:
    """The real tablet signed a manifest over a batch that another key signed."""
    envs = {s: seal(env, "TAB-0001", s, key=SigningKey.generate() if s == 2 else None) for s in SEQS}
    export(env, image, "TAB-0001", SEQS, envelopes=envs)


def batch_under_another_seq(env: Env, st: Station, image: Path) -> None:
    from tablet.usb_export import write_export_volume

    envs = {s: seal(env, "TAB-0001", 7 if s == 2 else s) for s in SEQS}
    batches = [StoredBatch(s, e, hashlib.sha256(e).digest(), 2, 1) for s, e in envs.items()]
    write_export_volume(image, batches, device_id="TAB-0001", usb_serial=serial_of("TAB-0001"),
                        device_key=env.tablet_key("TAB-0001"), now_ms=now_ms())


def oversized_files(env: Env, st: Station, image: Path) -> None:
    from dataclasses import replace

    export(env, image, "TAB-0001", SEQS)
    st.config = replace(st.config, limits=replace(st.config.limits, max_file_bytes=1))


def too_much_in_total(env: Env, st: Station, image: Path) -> None:
    from dataclasses import replace

    export(env, image, "TAB-0001", SEQS)
    st.config = replace(st.config, limits=replace(st.config.limits, max_total_bytes=100))


def corrupt_fat(env: Env, st: Station, image: Path) -> None:
    export(env, image, "TAB-0001", SEQS)
    patch_image(image, lambda img, geo: img.__setitem__(slice(11, 13), b"\x00\x00"))


def expired_registry(env: Env, st: Station, image: Path) -> None:
    export(env, image, "TAB-0001", SEQS)
    st.trust.clock = lambda: now_ms() + 30 * DAY_MS


CASES = {
    "no manifest": Case(no_manifest, "refused", "not-an-export-volume"),
    "plain USB stick": Case(plain_stick, "refused", "not-an-export-volume"),
    "manifest with bad signature": Case(manifest_bad_signature, "refused", "manifest-invalid", security=True),
    "manifest not a manifest": Case(manifest_garbage, "refused", "manifest-invalid", security=True),
    "manifest from a revoked tablet": Case(revoked_tablet, "refused", "tablet-not-in-service", security=True),
    "manifest from a lost tablet": Case(lost_tablet, "refused", "tablet-not-in-service", security=True),
    # No gateway to ask for a newer registry: the station cannot tell (test_usb_trust_refresh has the alarm case).
    "manifest from an unknown tablet": Case(unknown_tablet, "refused", "registry-stale"),
    "enrolled serial, another key": Case(impostor_with_enrolled_serial, "refused", "key-mismatch", security=True),
    "batch tampered": Case(batch_tampered, "partial", "manifest-mismatch", "hash", (1, 3, 4), security=True),
    "batch truncated": Case(batch_truncated, "partial", "manifest-mismatch", "size", (1, 3, 4)),
    "batch missing": Case(batch_missing, "partial", "manifest-mismatch", "missing", (1, 3, 4)),
    "batch not in the manifest": Case(batch_extra, "partial", "manifest-mismatch", "extra", (1, 2, 3, 4)),
    "batch named ../": Case(batch_named_dotdot, "partial", "manifest-mismatch", "extra", (1, 2, 3, 4)),
    "batch signed by another key": Case(batch_forged_but_listed, "partial", "batch-invalid", None, (1, 3, 4),
                                        security=True),
    "batch under another seq": Case(batch_under_another_seq, "partial", "batch-invalid", None, (1, 3, 4),
                                    security=True),
    "files above the size limit": Case(oversized_files, "partial", "limit-exceeded"),
    "volume above the total limit": Case(too_much_in_total, "refused", "limit-exceeded"),
    "corrupt FAT": Case(corrupt_fat, "refused", "corrupt-volume"),
    "registry snapshot expired": Case(expired_registry, "refused", "trust-expired"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_inputs_are_refused_precisely(env: Env, station: Station, tmp_path: Path, case: Case) -> None:
    image = tmp_path / "bad.img"
    case.make(env, station, image)
    with capture_logs() as logs:
        report: PullReport = station.pull_volume(str(image), hints=UsbHints("18d1", "4ee7", serial_of("TAB-0001")))
    assert report.outcome == case.outcome, report
    assert case.code in [p.code for p in report.problems], report.problems
    if case.kind is not None:
        assert case.kind in [p.kind for p in report.problems if p.code == case.code]
    assert report.spooled == case.spooled
    assert sorted(s for _, s in spooled_seqs(station)) == list(case.spooled)
    security = [e for e in logs if e["event"] == "usb.security.event"]
    assert bool(security) == case.security, security
    assert report.safe_to_unplug
    if case.outcome == "refused":
        assert station.spool.pending_custody() == []
        assert station.board.view.devices[0].state == "refused"


def test_an_expired_registry_raises_the_alarm(env: Env, station: Station) -> None:
    station.trust.clock = lambda: now_ms() + 30 * DAY_MS
    with capture_logs() as logs:
        assert station.trust.check_alarm() is False
        assert station.trust.check_alarm() is False
    assert [e["event"] for e in logs] == ["usb.trust.expired"]  # once per lapse, not per check
    station.refresh_status()
    assert station.board.view.trust_state == "expired"
    assert "USB ingestion is stopped" in (station.board.view.alarm or "")


def test_a_differing_usb_serial_is_only_a_hint(env: Env, station: Station, tmp_path: Path) -> None:
    image = tmp_path / "tab1.img"
    export(env, image, "TAB-0001", SEQS, usb_serial="SOMETHING-ELSE")
    with capture_logs() as logs:
        report = station.pull_volume(str(image), hints=UsbHints("18d1", "4ee7", "ANOTHER-SERIAL"))
    assert report.outcome == "complete"
    events = {e["event"] for e in logs}
    assert {"usb.hint.serial_mismatch", "usb.hint.manifest_serial_mismatch"} <= events
    assert "usb.security.event" not in events


def test_a_seq_reused_with_other_bytes_is_a_conflict(env: Env, station: Station, tmp_path: Path) -> None:
    first = tmp_path / "first.img"
    export(env, first, "TAB-0001", SEQS)
    station.pull_volume(str(first))
    second = tmp_path / "second.img"
    export(env, second, "TAB-0001", range(1, 6))  # seqs 1-4 sealed again: same seq, other bytes
    with capture_logs() as logs:
        report = station.pull_volume(str(second))
    assert report.spooled == (5,)
    assert [p.seq for p in report.problems if p.code == "batch-conflict"] == [1, 2, 3, 4]
    assert any(e["event"] == "usb.security.event" and e["code"] == "batch-conflict" for e in logs)
