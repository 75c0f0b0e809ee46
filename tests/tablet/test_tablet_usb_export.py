"""The USB export volume, read back by mtools, fsck.fat, blkid and pyfatfs (read-only)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from pyfatfs._exceptions import NotAnLFNEntryException
from pyfatfs.PyFatFS import PyFatFS

from tablet.errors import ExportTargetError, NothingToExportError
from tablet.fat_volume import plan_volume
from tablet.identity import TabletIdentity
from tablet.outbox import Outbox
from tablet.outbox_schema import StoredBatch
from tablet.usb_export import write_export_volume
from wire import batch_file_name, parse_manifest

from .conftest import NOW, Keys, counter_rng, sheets

MIB = 1024 * 1024


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian packages mtools and dosfstools (make setup)")
    return path


def _run(*args: str) -> bytes:
    return subprocess.run([_tool(args[0]), *args[1:]], check=True, capture_output=True).stdout


@pytest.fixture
def pending(outbox: Outbox, keys: Keys) -> list[StoredBatch]:
    outbox.add_sheets(sheets(45), now_ms=NOW)
    outbox.pack(now_ms=NOW, device_key=keys.device, data_public_key=keys.data_public, max_per_batch=10,
                rng=counter_rng())
    return outbox.pending_batches()


def _export(target: Path, batches: list[StoredBatch], identity: TabletIdentity, **kw: object):
    return write_export_volume(target, batches, device_id=identity.device_id, usb_serial=identity.usb_serial,
                               device_key=identity.signing_key, now_ms=NOW + 1, **kw)


@pytest.mark.parametrize("fat_bits", [16, 32])
def test_volume_read_by_mtools_and_verified(
    tmp_path: Path, pending: list[StoredBatch], identity: TabletIdentity, keys: Keys, fat_bits: int
) -> None:
    image = tmp_path / "export.img"
    result = _export(image, pending, identity, fat_bits=fat_bits)
    assert result.seqs == (1, 2, 3, 4, 5) and result.left_out == 0 and result.fat_type == fat_bits
    assert image.stat().st_size == result.volume_bytes

    listing = _run("mdir", "-b", "-i", str(image), "::/SANAQ").decode().split()
    expected = {"MANIFEST.SQM"} | {batch_file_name(s) for s in range(1, 6)}
    assert {line.rsplit("/", 1)[-1] for line in listing} == expected
    assert _run("mdir", "-b", "-i", str(image), "::/").decode().split() == ["::/SANAQ/"]
    assert b"SANAQEXPORT" in _run("mlabel", "-i", str(image), "-s", "::")
    assert b"SANAQEXPORT" in _run("minfo", "-i", str(image), "::")
    subprocess.run([_tool("fsck.fat"), "-n", str(image)], check=True, capture_output=True)

    manifest_bytes = _run("mcopy", "-i", str(image), "::/SANAQ/MANIFEST.SQM", "-")
    assert hashlib.sha256(manifest_bytes).digest() == result.manifest_sha256
    manifest = parse_manifest(manifest_bytes, bytes(keys.device.verify_key))
    assert (manifest.device_id, manifest.usb_serial, manifest.created_at_ms) == (
        identity.device_id, identity.usb_serial, NOW + 1)
    assert [e.seq for e in manifest.batches] == [1, 2, 3, 4, 5]
    for entry, batch in zip(manifest.batches, pending, strict=True):
        data = _run("mcopy", "-i", str(image), f"::/SANAQ/{entry.file}", "-")
        assert data == batch.envelope
        assert (len(data), hashlib.sha256(data).digest()) == (entry.size, entry.sha256)


def test_volume_read_by_pyfatfs_read_only(tmp_path: Path, pending: list[StoredBatch], identity: TabletIdentity) -> None:
    image = tmp_path / "export.img"
    _export(image, pending, identity)
    before = hashlib.sha256(image.read_bytes()).digest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs = PyFatFS(str(image), read_only=True)
    try:
        assert fs.listdir("/") == ["SANAQ"]
        names = sorted(fs.listdir("/SANAQ"))
        assert names == sorted(["MANIFEST.SQM", *(batch_file_name(b.seq) for b in pending)])
        for b in pending:
            assert fs.readbytes(f"/SANAQ/{batch_file_name(b.seq)}") == b.envelope
        for entry in fs.fs.root_dir.get_entry("SANAQ").get_entries()[1]:
            with pytest.raises(NotAnLFNEntryException):  # 8.3 names only, no long-name entries
                entry.get_long_name()
        label = fs.fs.bpb_header["BS_VolLab"].decode("ascii").rstrip()
        root_labels = [e.name.name.decode("ascii").rstrip() for e in fs.fs.root_dir.get_entries()[2]
                       if e.is_volume_id()]
    finally:
        fs.close()
    assert label == "SANAQEXPORT" and root_labels == ["SANAQEXPORT"]
    assert hashlib.sha256(image.read_bytes()).digest() == before


def test_blkid_sees_the_label(tmp_path: Path, pending: list[StoredBatch], identity: TabletIdentity) -> None:
    image = tmp_path / "export.img"
    _export(image, pending, identity)
    out = _run("blkid", "-o", "export", str(image)).decode().splitlines()
    assert "LABEL=SANAQEXPORT" in out and "TYPE=vfat" in out


def test_export_leaves_the_outbox_pending(
    tmp_path: Path, outbox: Outbox, pending: list[StoredBatch], identity: TabletIdentity
) -> None:
    _export(tmp_path / "a.img", pending, identity)
    assert outbox.pending_batches() == pending
    assert outbox.stats().sheets_in_flight == 45


def test_replace_is_atomic_and_leaves_no_temp(
    tmp_path: Path, pending: list[StoredBatch], identity: TabletIdentity
) -> None:
    image = tmp_path / "export.img"
    image.write_bytes(b"old contents")
    _export(image, pending, identity)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "outbox.db" and "outbox" not in p.name) == [
        "export.img"]
    assert image.read_bytes()[510:512] == b"\x55\xaa"


def test_in_place_keeps_inode_and_trailing_bytes(
    tmp_path: Path, pending: list[StoredBatch], identity: TabletIdentity
) -> None:
    backing = tmp_path / "lun.img"
    with backing.open("wb") as f:
        f.truncate(24 * MIB)
        f.seek(24 * MIB - 4)
        f.write(b"TAIL")
    inode = backing.stat().st_ino
    result = _export(backing, pending, identity, in_place=True)
    assert backing.stat().st_ino == inode and backing.stat().st_size == 24 * MIB
    assert backing.read_bytes()[-4:] == b"TAIL"
    assert result.volume_bytes < 24 * MIB
    listing = _run("mdir", "-b", "-i", str(backing), "::/SANAQ").decode().split()
    assert len(listing) == 6


@pytest.mark.parametrize(
    ("make_target", "kw"),
    [(lambda p: p.write_bytes(b"\0" * 4096), {"in_place": True}),
     (lambda p: p.mkdir(), {}),
     (lambda p: None, {"in_place": True})],
    ids=["too-small", "directory", "in-place-missing"],
)
def test_unusable_targets_refused(
    tmp_path: Path, pending: list[StoredBatch], identity: TabletIdentity, make_target, kw: dict
) -> None:
    target = tmp_path / "target"
    make_target(target)
    with pytest.raises(ExportTargetError):
        _export(target, pending, identity, **kw)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_nothing_to_export(tmp_path: Path, identity: TabletIdentity) -> None:
    with pytest.raises(NothingToExportError):
        _export(tmp_path / "x.img", [], identity)
    assert not (tmp_path / "x.img").exists()


def test_manifest_cap_leaves_the_rest_for_next_time(
    tmp_path: Path, pending: list[StoredBatch], identity: TabletIdentity, keys: Keys
) -> None:
    image = tmp_path / "x.img"
    result = _export(image, pending, identity, max_batches=2)
    assert (result.seqs, result.left_out) == ((1, 2), 3)
    manifest = parse_manifest(_run("mcopy", "-i", str(image), "::/SANAQ/MANIFEST.SQM", "-"),
                              bytes(keys.device.verify_key))
    assert [e.seq for e in manifest.batches] == [1, 2]


@pytest.mark.parametrize(
    ("sizes", "bits", "low", "high"),
    [([600], 16, 8 * MIB, 8 * MIB),
     ([4 * MIB] * 20, 16, 80 * MIB, 100 * MIB),
     ([3000] * 5000, 16, 16 * MIB, 40 * MIB),
     ([4 * MIB] * 300, 32, 1200 * MIB, 1400 * MIB)],
    ids=["tiny", "80MiB", "many-small", "past-1GiB"],
)
def test_plan_volume_sizes(sizes: list[int], bits: int, low: int, high: int) -> None:
    plan = plan_volume(sizes)
    assert plan.fat_bits == bits and low <= plan.size <= high and plan.size % MIB == 0
    data = sum(-(-s // plan.cluster_bytes) * plan.cluster_bytes for s in sizes)
    assert data < plan.size


def test_many_files_fit_and_stay_fast(tmp_path: Path, identity: TabletIdentity) -> None:
    batches = [StoredBatch(seq, os.urandom(700 + seq), b"\0" * 32, 1, NOW) for seq in range(1, 2001)]
    image = tmp_path / "many.img"
    result = _export(image, batches, identity)  # quadratic directory handling would take minutes here
    assert len(result.seqs) == 2000
    subprocess.run([_tool("fsck.fat"), "-n", str(image)], check=True, capture_output=True)
    assert len(_run("mdir", "-b", "-i", str(image), "::/SANAQ").split()) == 2001
    assert _run("mcopy", "-i", str(image), "::/SANAQ/00001999.SQB", "-") == batches[1998].envelope
