"""FAT12, FAT16 and FAT32 volumes on each side of each type boundary are read as the FAT specification says.

The type is the cluster count's (< 4085 FAT12, < 65525 FAT16, else FAT32),
whatever pyfatfs guesses. Every image is made by ``mkfs.fat`` at an exact
sector count and filled by ``mmd``/``mcopy`` with the files of the tablet's own
export (``tablet.usb_export.export_files``); the station then pulls it and must
spool every batch bit for bit, with no problem and no security event.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tablet.usb_export import export_files
from usb_ingest.config import VolumeLimits
from usb_ingest.errors import CorruptVolume
from usb_ingest.station import Station
from usb_ingest.volume_fat import FatExportVolume, fat_bits_for

from .images import Env, StoredBatch, fat_clusters, mkfs_fat_image, now_ms, seal, serial_of

pytestmark = pytest.mark.usefixtures("_logs_unfiltered")

DEVICE = "TAB-0001"
SEQS = (1, 2, 3)
EXACT = ("-a", "-s", "1")  # no alignment, one sector per cluster: the cluster count follows the sector count


def set_total_sectors(image: Path, sectors: int) -> None:
    """Shrink a volume's recorded size (its files stay where they are, near the start)."""
    with image.open("r+b") as f:
        f.seek(19)
        if sectors < 0x10000 and f.read(2) != b"\0\0":
            f.seek(19)
            f.write(struct.pack("<H", sectors))
        else:
            f.seek(32)
            f.write(struct.pack("<I", sectors))


@dataclass(frozen=True)
class Case:
    name: str
    sectors: int
    mkfs_args: tuple[str, ...]
    clusters: int
    fat_bits: int
    then: Callable[[Path], None] | None = None


CASES = [
    # the volume of the issue: `mkfs.fat -C -n SANAQEXPORT x.img 8192` (8 MiB, 4 sectors per cluster)
    Case("mkfs-default-8MiB-4081", 16384, (), 4081, 12),
    Case("fat12-4084-last-fat12", 4141, (*EXACT, "-F", "12"), 4084, 12),
    Case("fat16-4085-first-fat16", 4152, (*EXACT, "-F", "16"), 4085, 16, lambda p: set_total_sectors(p, 4150)),
    Case("fat16-4087-smallest-mkfs-fat16", 4152, (*EXACT, "-F", "16"), 4087, 16),
    Case("fat16-65524-last-fat16", 66069, (*EXACT, "-F", "16"), 65524, 16),
    Case("fat32-65525-first-fat32", 66581, (*EXACT, "-F", "32"), 65525, 32),
    Case("fat32-65598", 66656, (*EXACT, "-F", "32"), 65598, 32),
]


@pytest.fixture
def station(env: Env) -> Iterator[Station]:
    s = Station.open(env.config())
    yield s
    s.close()


def tablet_files(env: Env) -> tuple[dict[str, bytes], dict[int, bytes]]:
    envelopes = {seq: seal(env, DEVICE, seq) for seq in SEQS}
    batches = [StoredBatch(s, e, hashlib.sha256(e).digest(), 2, now_ms()) for s, e in envelopes.items()]
    files = export_files(batches, device_id=DEVICE, usb_serial=serial_of(DEVICE), created_at_ms=now_ms(),
                         device_key=env.tablet_key(DEVICE))
    return files, envelopes


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_fat_type_boundary_is_read_by_its_cluster_count(
    case: Case, env: Env, station: Station, tmp_path: Path
) -> None:
    image = tmp_path / f"{case.name}.img"
    files, envelopes = tablet_files(env)
    mkfs_fat_image(image, case.sectors, files, mkfs_args=case.mkfs_args)
    if case.then:
        case.then(image)
    assert fat_clusters(image) == (case.clusters, case.fat_bits == 32)  # the image is where the case says
    assert fat_bits_for(case.clusters) == case.fat_bits

    with FatExportVolume.open(image, VolumeLimits()) as volume:
        assert (volume.listing.fat_bits, volume.listing.label) == (case.fat_bits, "SANAQEXPORT")
        assert [n for n, _ in volume.listing.batches] == [f"{s:08d}.SQB" for s in SEQS]
        assert {s: volume.read_batch(f"{s:08d}.SQB") for s in SEQS} == envelopes

    with capture_logs() as logs:
        report = station.pull_volume(str(image))
    assert (report.outcome, report.problems, report.spooled) == ("complete", (), SEQS)
    assert {e.seq: station.spool.read(e) for e in station.spool.pending_batches()} == envelopes
    assert [e for e in logs if e["event"] == "usb.security.event"] == []


@pytest.mark.parametrize(
    ("sectors", "clusters"),
    [pytest.param(66580, 65524, id="fat32-layout-on-65524-clusters"),
     pytest.param(66000, 64944, id="fat32-layout-on-64944-clusters")],
)
def test_a_boot_sector_whose_layout_contradicts_its_cluster_count_is_refused(
    sectors: int, clusters: int, env: Env, station: Station, tmp_path: Path
) -> None:
    """A FAT32 boot sector on too few clusters (``mkfs.fat -F 32`` makes them on small media): readers disagree.

    mtools refuses to fill such a volume, so a filled first-FAT32 volume has its size cut below the boundary.
    """
    image = tmp_path / "odd.img"
    files, _ = tablet_files(env)
    mkfs_fat_image(image, 66581, files, mkfs_args=(*EXACT, "-F", "32"))
    set_total_sectors(image, sectors)
    assert fat_clusters(image) == (clusters, True)
    with pytest.raises(CorruptVolume, match="layout does not match"):
        FatExportVolume.open(image, VolumeLimits())
    report = station.pull_volume(str(image))
    assert report.outcome == "refused" and report.spooled == ()
    assert list(station.spool.pending_batches()) == []


def test_a_fat_too_short_for_the_clusters_is_refused(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "short-fat.img"
    files, _ = tablet_files(env)
    mkfs_fat_image(image, 16384, files)  # FAT12, 4081 clusters, FATs of 12 sectors
    with image.open("r+b") as f:
        f.seek(22)
        f.write(struct.pack("<H", 2))  # 2 sectors hold 682 FAT12 entries
        f.seek(19)
        f.write(struct.pack("<H", 16384 - 20))  # keep the count in FAT12 after the FATs shrank
    with pytest.raises(CorruptVolume, match="FAT too short"):
        FatExportVolume.open(image, VolumeLimits())
