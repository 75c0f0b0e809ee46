"""Sizing a FAT volume for given files, and two fix-ups pyfatfs 1.1's ``mkfs`` needs.

``plan_volume`` picks FAT16 up to 1 GiB and FAT32 above (FAT32 needs at least
65525 clusters, so never below 40 MiB), and a size that holds every file
rounded up to whole clusters plus the directory, both FATs and a margin. The
cluster size follows pyfatfs's own table (Microsoft's fatgen103 defaults), so
the plan matches what ``PyFat.mkfs`` will lay out.

``fix_label_and_fsinfo`` patches what ``PyFat.mkfs`` gets wrong: it writes the
root directory's volume-label entry through the 8.3 name mangler ("SANAQEXP"),
while blkid/udev (``ID_FS_LABEL``), mtools and Windows read the label from that
entry; it writes a zero CHS geometry, which mtools refuses; and on FAT32 it
leaves the FSInfo free-cluster count stale.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pyfatfs.PyFat import PyFat

from .errors import ExportError

__all__ = ["FatPlan", "fix_label_and_fsinfo", "plan_volume"]

_SECTOR = 512
_MIB = 1024 * 1024
_FAT16_MAX_AUTO = 1024 * _MIB
_MIN_SIZE = {16: 8 * _MIB, 32: 40 * _MIB}
_MAX_SIZE = {16: 2048 * _MIB - _MIB, 32: 32 * 1024 * _MIB}
# (max sectors, sectors per cluster) as in pyfatfs PyFat.mkfs
_CLUSTER_TABLE = {
    16: ((8400, 0), (32680, 2), (262144, 4), (524288, 8), (1048576, 16), (2097152, 32), (4194304, 64)),
    32: ((66600, 0), (532480, 1), (16777216, 8), (33554432, 16), (67108864, 32)),
}
_VOLUME_ID_ATTR = 0x08
_LFN_ATTR = 0x0F
_DIRECTORY_ATTR = 0x10


@dataclass(frozen=True, slots=True)
class FatPlan:
    fat_bits: int  # 16 or 32
    size: int  # bytes, a multiple of 1 MiB
    cluster_bytes: int

    @property
    def pyfat_type(self) -> int:
        return int(PyFat.FAT_TYPE_FAT16 if self.fat_bits == 16 else PyFat.FAT_TYPE_FAT32)


def _cluster_bytes(fat_bits: int, size: int) -> int:
    sectors = math.ceil(size / _SECTOR)
    for max_sectors, per_cluster in _CLUSTER_TABLE[fat_bits]:
        if sectors <= max_sectors:
            return per_cluster * _SECTOR
    return 0


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


def plan_volume(file_sizes: list[int], *, fat_bits: int | None = None) -> FatPlan:
    """The smallest comfortable volume holding files of these sizes in one directory."""
    if fat_bits not in (None, 16, 32):
        raise ValueError("fat_bits must be 16 or 32")
    size = _round_up(sum(file_sizes) + _MIB, _MIB)
    for _ in range(16):
        bits = fat_bits or (16 if size <= _FAT16_MAX_AUTO else 32)
        size = max(size, _MIN_SIZE[bits])
        if size > _MAX_SIZE[bits]:
            raise ExportError("export too large for one FAT volume", size=size, fat_bits=bits)
        cluster = _cluster_bytes(bits, size)
        directory = _round_up((len(file_sizes) + 3) * 32, cluster) + (cluster if bits == 32 else 0)
        data = sum(_round_up(s, cluster) for s in file_sizes) + directory
        fats = 2 * _round_up((size // cluster + 2) * (bits // 8), _SECTOR)
        needed = data + fats + 64 * 1024 + data // 16 + 256 * 1024
        if needed <= size:
            return FatPlan(bits, size, cluster)
        size = _round_up(needed, _MIB)
    raise ExportError("no FAT layout found for the export", size=size)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Offsets of a FAT image, from its boot sector."""

    bytes_per_sector: int
    sectors_per_cluster: int
    fat_offset: int
    root_offset: int
    root_len: int
    data_offset: int
    clusters: int
    fat32: tuple[int, int] | None  # (FSInfo sector, backup boot sector) on FAT32

    @classmethod
    def read(cls, boot: bytes) -> _Layout:
        bps, spc, reserved, nfats, root_entries, total16 = struct.unpack_from("<HBHBHH", boot, 11)
        (fat16_size,) = struct.unpack_from("<H", boot, 22)
        (total32,) = struct.unpack_from("<I", boot, 32)
        total = total16 or total32
        if fat16_size:
            root_offset = (reserved + nfats * fat16_size) * bps
            root_len = root_entries * 32
            data_offset = root_offset + _round_up(root_len, bps)
            fat32 = None
        else:
            fat32_size, root_cluster, fsinfo, backup = struct.unpack_from("<I4xIHH", boot, 36)
            data_offset = (reserved + nfats * fat32_size) * bps
            root_offset = data_offset + (root_cluster - 2) * spc * bps
            root_len = spc * bps  # the label entry is in the root's first cluster
            fat32 = (fsinfo, backup)
        clusters = (total * bps - data_offset) // (spc * bps)
        return cls(bps, spc, reserved * bps, root_offset, root_len, data_offset, clusters, fat32)

    def cluster_offset(self, cluster: int) -> int:
        return self.data_offset + (cluster - 2) * self.sectors_per_cluster * self.bytes_per_sector


def _root_entries(f: BinaryIO, layout: _Layout) -> list[tuple[int, bytes]]:
    """(offset, 32-byte entry) of the live short entries in the root directory's first cluster/area."""
    f.seek(layout.root_offset)
    root = f.read(layout.root_len)
    found = []
    for i in range(0, len(root), 32):
        entry = root[i : i + 32]
        if entry[0] == 0:
            break
        if entry[0] != 0xE5 and entry[11] != _LFN_ATTR:
            found.append((layout.root_offset + i, entry))
    return found


def _fix_fsinfo(f: BinaryIO, layout: _Layout, fsinfo: int, backup: int) -> None:
    f.seek(layout.fat_offset)
    entries = struct.unpack(f"<{layout.clusters + 2}I", f.read((layout.clusters + 2) * 4))
    free = [n for n in range(2, layout.clusters + 2) if entries[n] & 0x0FFFFFFF == 0]
    for sector in (fsinfo, backup + fsinfo):  # FSInfo and its backup copy
        f.seek(sector * layout.bytes_per_sector)
        if f.read(4) != b"RRaA":
            raise ExportError("FAT32 image has no FSInfo sector where its boot sector says", sector=sector)
        f.seek(sector * layout.bytes_per_sector + 488)
        f.write(struct.pack("<II", len(free), free[0] if free else 0xFFFFFFFF))


def _fix_dotdot_times(f: BinaryIO, layout: _Layout, entry: bytes) -> None:
    """Give a subdirectory's ".." entry the times of its "." entry (pyfatfs leaves them zero: 1980-00-00)."""
    (hi,) = struct.unpack_from("<H", entry, 20)
    (lo,) = struct.unpack_from("<H", entry, 26)
    offset = layout.cluster_offset(hi << 16 | lo)
    f.seek(offset)
    dot, dotdot = f.read(32), f.read(32)
    if dot[:11] != b".          " or dotdot[:11] != b"..         ":
        raise ExportError("FAT image subdirectory does not start with . and ..")
    f.seek(offset + 32 + 13)
    f.write(dot[13:20])  # creation time (10 ms, time, date) and access date
    f.seek(offset + 32 + 22)
    f.write(dot[22:26])  # write time and date


def fix_label_and_fsinfo(path: Path, label: str) -> None:
    """Patch a fresh pyfatfs image: root-dir label entry, CHS geometry, ".." times, FAT32 FSInfo counts.

    Geometry: pyfatfs writes 0 sectors per track and 0 heads, which mtools
    refuses; we write the 32/64 that ``mkfs.fat`` uses for images (the fields
    mean nothing for LBA media).
    """
    raw_label = label.upper().ljust(11).encode("ascii")
    if len(raw_label) != 11:
        raise ValueError("a FAT label has at most 11 characters")
    with path.open("r+b") as f:
        layout = _Layout.read(f.read(_SECTOR))
        geometry = struct.pack("<HH", 32, 64)
        f.seek(24)
        f.write(geometry)
        if layout.fat32 is not None:
            fsinfo, backup = layout.fat32
            f.seek(backup * layout.bytes_per_sector + 24)
            f.write(geometry)
            _fix_fsinfo(f, layout, fsinfo, backup)
        labelled = False
        for offset, entry in _root_entries(f, layout):
            if entry[11] & _VOLUME_ID_ATTR and not labelled:
                f.seek(offset)
                f.write(raw_label)
                labelled = True
            elif entry[11] & _DIRECTORY_ATTR:
                _fix_dotdot_times(f, layout, entry)
    if not labelled:
        raise ExportError("FAT image has no volume-label entry", path=str(path))
