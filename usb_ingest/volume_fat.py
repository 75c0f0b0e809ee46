"""Read an export volume in user space, read-only, from a block device or an image file.

The kernel never mounts the medium: pyfatfs parses the FAT from an ``open(...,
"rb")`` file object, so a hostile filesystem reaches only this process, and
only through the guards below.

Guards (each learnt from feeding pyfatfs 1.1 corrupt images):

* **Header pre-check** before pyfatfs sees the volume: sector size, cluster
  size, FAT count (1..2) and the FAT's size must be plausible, and the FATs
  must lie inside the device. Otherwise pyfatfs can allocate gigabytes
  (``MemoryError``) or read for minutes.
* **The FAT type from the cluster count**, as the FAT specification
  (fatgen103) says and nothing else: fewer than 4085 data clusters is FAT12,
  fewer than 65525 FAT16, otherwise FAT32. pyfatfs 1.1 counts the clusters
  before it knows the root directory's size, so a volume just below 4085
  clusters (``mkfs.fat -C x.img 8192``: 4081) was read as FAT16 and every
  batch failed its hash; ``_GuardedPyFat`` hands pyfatfs the type computed
  here. A boot sector whose layout disagrees with its count (a FAT32 boot
  sector on fewer than 65525 clusters, as ``mkfs.fat -F 32`` makes on small
  media, or a FAT12/16 one on 65525 or more; a FAT too short for its
  clusters) is refused as ``CorruptVolume``: readers would disagree on it.
* **Bounded, loop-free cluster chains**: pyfatfs follows chains without loop
  detection (a directory whose chain points at itself spins forever). The
  ``_GuardedPyFat`` subclass walks every chain itself: clusters must stay in
  the FAT, never repeat, and a chain is cut at the length its purpose allows
  (a directory: what ``max_files`` entries need; a file: its size).
* **Names only from the protocol**: in ``/SANAQ`` only ``MANIFEST.SQM`` and
  ``NNNNNNNN.SQB`` (8.3 names, no differing long name) are ever read; every
  other entry (sub-directories, long names such as ``../x``, other files) is
  listed as *extra* and never opened. Nothing is followed outside ``/SANAQ``.
* **Limits** from ``VolumeLimits`` on entry count and sizes, checked against the
  directory before any file is read.
* **One exception type out**: anything pyfatfs, ``struct`` or the decoder raise
  becomes ``CorruptVolume``; an ``OSError`` becomes ``DeviceGone`` (unplugged).

A file is read once, into memory, and the caller verifies and spools exactly
those bytes: a medium that changes between verification and copy cannot
smuggle in other bytes.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from pyfatfs.PyFat import PyFat

from wire import EXPORT_DIR, MANIFEST_NAME

from .config import VolumeLimits
from .errors import CorruptVolume, DeviceGone, IngestError, LimitExceeded, NotAnExportVolume

__all__ = ["FAT12_MAX_CLUSTERS", "FAT16_MAX_CLUSTERS", "ExportListing", "FatExportVolume", "fat_bits_for"]

_BATCH_NAME = re.compile(r"[0-9]{8}\.SQB")
_ATTR_VOLUME_ID = 0x08
_ATTR_DIRECTORY = 0x10
_NT_LOWER_BASE = 0x08
_NT_LOWER_EXT = 0x10
_DIR_ENTRY = 32
_MAX_NAME_SHOWN = 64


@dataclass(frozen=True, slots=True)
class ExportListing:
    """What the volume's directories say, before any file is read.

    ``batches`` are the protocol-named batch files with their directory sizes
    (ascending name); ``extra`` every other entry of ``/`` and ``/SANAQ``, as a
    printable, shortened path.
    """

    label: str | None
    fat_bits: int
    manifest_size: int | None
    batches: tuple[tuple[str, int], ...]
    extra: tuple[str, ...]


def _printable(name: str) -> str:
    shown = name.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= _MAX_NAME_SHOWN else shown[: _MAX_NAME_SHOWN - 3] + "..."


class _GuardedPyFat(PyFat):  # type: ignore[misc]  # pyfatfs ships no type hints
    """PyFat whose cluster chains are bounded and loop-free (see the module docstring)."""

    def __init__(self, max_dir_clusters: int, fat_bits: int) -> None:
        super().__init__(lazy_load=True)
        self.max_dir_clusters = max_dir_clusters
        self.spec_fat_bits = fat_bits

    def _PyFat__determine_fat_type(self) -> int:  # noqa: N802 - replaces PyFat's private, miscounting method
        """The type ``_precheck`` computed from the cluster count (see the module docstring)."""
        return self.spec_fat_bits

    def walk_chain(self, first: int, limit: int) -> list[int]:
        """Clusters of the chain starting at ``first``, at most ``limit`` of them."""
        values = self.FAT_CLUSTER_VALUES[self.fat_type]
        low, high, eoc = values["MIN_DATA_CLUSTER"], values["MAX_DATA_CLUSTER"], values["END_OF_CLUSTER_MIN"]
        fat = self.fat
        chain: list[int] = []
        seen: set[int] = set()
        cluster = first
        while True:
            if not 2 <= cluster < len(fat):
                raise CorruptVolume("cluster chain leaves the FAT", cluster=cluster)
            if cluster in seen:
                raise CorruptVolume("cluster chain loops", cluster=cluster)
            seen.add(cluster)
            chain.append(cluster)
            if len(chain) >= limit:
                return chain
            nxt = fat[cluster]
            if nxt >= eoc or (self.fat_type == 12 and nxt == self.FAT12_SPECIAL_EOC):
                return chain
            if not low <= nxt <= high:
                raise CorruptVolume("cluster chain hits a free or bad cluster", cluster=cluster)
            cluster = nxt

    def get_cluster_chain(self, first_cluster: int) -> Iterator[int]:
        """pyfatfs uses this for directories only (we read files ourselves)."""
        chain = self.walk_chain(first_cluster, self.max_dir_clusters + 1)
        if len(chain) > self.max_dir_clusters:
            raise LimitExceeded("directory larger than the file limit allows", clusters=len(chain))
        yield from chain


FAT12_MAX_CLUSTERS = 4084
FAT16_MAX_CLUSTERS = 65524


def fat_bits_for(clusters: int) -> int:
    """The FAT type of a volume with ``clusters`` data clusters, as the FAT specification defines it."""
    if clusters <= FAT12_MAX_CLUSTERS:
        return 12
    if clusters <= FAT16_MAX_CLUSTERS:
        return 16
    return 32


def _precheck(fp: BinaryIO, limits: VolumeLimits) -> tuple[int, int]:
    """Refuse implausible boot sectors; returns (the cluster size in bytes, the FAT type: 12, 16 or 32)."""
    size = fp.seek(0, os.SEEK_END)  # a block device's st_size is 0; seeking to the end works
    fp.seek(0)
    boot = fp.read(512)
    if len(boot) < 512:
        raise CorruptVolume("too small for a FAT volume", size=size)
    bps, spc, reserved, nfats, root_entries, total16 = struct.unpack_from("<HBHBHH", boot, 11)
    (fat16,) = struct.unpack_from("<H", boot, 22)
    (total32,) = struct.unpack_from("<I", boot, 32)
    (fat32,) = struct.unpack_from("<I", boot, 36)
    fat_sectors = fat16 or fat32
    if bps not in (512, 1024, 2048, 4096) or spc not in (1, 2, 4, 8, 16, 32, 64, 128):
        raise CorruptVolume("not a FAT boot sector (sector or cluster size)")
    if not 1 <= nfats <= 2 or reserved < 1 or fat_sectors < 1:
        raise CorruptVolume("not a FAT boot sector (FAT count or size)")
    if fat_sectors * bps > limits.max_fat_bytes:
        raise LimitExceeded("FAT larger than allowed", fat_bytes=fat_sectors * bps, limit=limits.max_fat_bytes)
    if (reserved + nfats * fat_sectors) * bps > size:
        raise CorruptVolume("FATs extend past the end of the volume", size=size)
    root_sectors = -(-root_entries * _DIR_ENTRY // bps)
    data_sectors = (total16 or total32) - (reserved + nfats * fat_sectors + root_sectors)
    if data_sectors < spc:
        raise CorruptVolume("no data clusters after the FATs and the root directory")
    clusters = data_sectors // spc
    bits = fat_bits_for(clusters)
    if (bits == 32) != (fat16 == 0) or (bits == 32 and root_entries != 0):
        raise CorruptVolume("boot sector layout does not match the FAT type of its cluster count",
                            clusters=clusters, fat_bits=bits)
    if fat_sectors * bps * 8 // bits < clusters + 2:
        raise CorruptVolume("FAT too short for the volume's clusters", clusters=clusters, fat_bits=bits)
    fp.seek(0)
    return int(bps * spc), bits


def _display_name(entry: Any) -> tuple[str, bool]:
    """(the name a user would see, whether it is a plain 8.3 name).

    The long name wins when there is one; a long name that differs from the
    8.3 name makes the entry "not plain", so it is never read.
    """
    raw = bytes(entry.name.name)
    base = raw[:8].decode("ibm437").rstrip()
    ext = raw[8:11].decode("ibm437").rstrip()
    if entry.ntres & _NT_LOWER_BASE:
        base = base.lower()
    if entry.ntres & _NT_LOWER_EXT:
        ext = ext.lower()
    short = f"{base}.{ext}" if ext else base
    if entry.lfn_entry is None:
        return short, True
    try:
        long_name = str(entry.lfn_entry)
    except UnicodeDecodeError:
        return "<undecodable long name>", False
    return long_name, long_name == short


def _is_dot_dir(entry: Any) -> bool:
    return bool(entry.attr & _ATTR_DIRECTORY) and bytes(entry.name.name) in (b".          ", b"..         ")


class FatExportVolume:
    """An open export volume. Use ``open``; close it (or use ``with``) when done.

    Not thread-safe; one reader per volume.
    """

    def __init__(self, fp: BinaryIO, pf: _GuardedPyFat, *, listing: ExportListing, files: dict[str, Any],
                 limits: VolumeLimits, owns_fp: bool) -> None:
        self._fp = fp
        self._pf = pf
        self.listing = listing
        self._files = files
        self._limits = limits
        self._owns_fp = owns_fp

    @classmethod
    def open(cls, source: str | os.PathLike[str] | BinaryIO, limits: VolumeLimits) -> FatExportVolume:
        """Parse the volume's header, FAT, root and /SANAQ; read no file yet.

        Raises ``CorruptVolume``, ``NotAnExportVolume``, ``LimitExceeded`` or ``DeviceGone``.
        """
        owns = isinstance(source, (str, os.PathLike))
        if isinstance(source, (str, os.PathLike)):
            try:
                fp: BinaryIO = open(source, "rb")  # noqa: SIM115 - closed by close() or below on failure
            except OSError as e:
                raise DeviceGone("cannot open the volume", path=str(source), errno=e.errno) from e
        else:
            fp = source
        try:
            with _wrapped("reading the volume's structure"):
                cluster_bytes, fat_bits = _precheck(fp, limits)
                # /SANAQ may hold max_files 8.3 entries (+ '.', '..', label), each with one long-name part.
                dir_bytes = (limits.max_files + 3) * _DIR_ENTRY * 2
                pf = _GuardedPyFat(max_dir_clusters=max(1, -(-dir_bytes // cluster_bytes)), fat_bits=fat_bits)
                with warnings.catch_warnings():  # pyfatfs warns (dirty bit, differing FATs); we judge by content
                    warnings.simplefilter("ignore")
                    pf.set_fp(fp)
                    listing, files = _list(pf, limits)
        except BaseException:
            if owns:
                fp.close()
            raise
        return cls(fp, pf, listing=listing, files=files, limits=limits, owns_fp=owns)

    def read_manifest(self) -> bytes:
        return self._read_file(MANIFEST_NAME, self._limits.max_manifest_bytes)

    def read_batch(self, name: str) -> bytes:
        if not _BATCH_NAME.fullmatch(name):
            raise ValueError(f"not a batch file name: {name!r}")
        return self._read_file(name, self._limits.max_file_bytes)

    def _read_file(self, name: str, max_bytes: int) -> bytes:
        entry = self._files.get(name)
        if entry is None:
            raise NotAnExportVolume("no such file in /SANAQ", file=name)
        size = entry.filesize
        if size > max_bytes:
            raise LimitExceeded("file larger than allowed", file=name, size=size, limit=max_bytes)
        if size == 0:
            return b""
        with _wrapped(f"reading {name}"):
            bpc = self._pf.bytes_per_cluster
            need = -(-size // bpc)
            chain = self._pf.walk_chain(entry.get_cluster(), need)
            if len(chain) < need:
                raise CorruptVolume("cluster chain shorter than the file", file=name, size=size)
            data = bytearray()
            for start, count in _runs(chain):
                self._fp.seek(self._pf.get_data_cluster_address(start))
                want = min(count * bpc, size - len(data))
                chunk = self._fp.read(want)
                if len(chunk) != want:
                    raise CorruptVolume("file data lies past the end of the volume", file=name)
                data += chunk
            return bytes(data)

    def close(self) -> None:
        if self._owns_fp:
            self._fp.close()

    def __enter__(self) -> FatExportVolume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _runs(chain: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive clusters as (first, count), so contiguous files are read in one call."""
    start = prev = chain[0]
    for c in chain[1:]:
        if c != prev + 1:
            yield start, prev - start + 1
            start = c
        prev = c
    yield start, prev - start + 1


def _list(pf: _GuardedPyFat, limits: VolumeLimits) -> tuple[ExportListing, dict[str, Any]]:
    label: str | None = None
    export_dir = None
    extra: list[str] = []
    for entry in pf.root_dir._get_entries_raw():
        if entry.lfn_entry is None and entry.attr & _ATTR_VOLUME_ID and not entry.attr & _ATTR_DIRECTORY:
            label = bytes(entry.name.name).decode("ibm437").rstrip() or None
            continue
        name, _ = _display_name(entry)
        if name == EXPORT_DIR and entry.attr & _ATTR_DIRECTORY and export_dir is None:
            export_dir = entry
        else:
            extra.append(_printable(name) + ("/" if entry.attr & _ATTR_DIRECTORY else ""))
        if len(extra) > limits.max_files:
            raise LimitExceeded("too many entries in the volume's root", limit=limits.max_files)
    if label is None:
        raw = pf.bpb_header["BS_VolLab"]
        label = (raw.decode("ibm437").rstrip() or None) if isinstance(raw, bytes) else None
    if export_dir is None:
        raise NotAnExportVolume(f"no /{EXPORT_DIR} directory")
    files: dict[str, Any] = {}
    entries = [e for e in export_dir._get_entries_raw() if not _is_dot_dir(e)]
    if len(entries) > limits.max_files:
        raise LimitExceeded(f"too many entries in /{EXPORT_DIR}", count=len(entries), limit=limits.max_files)
    for entry in entries:
        name, plain = _display_name(entry)
        protocol_name = plain and (name == MANIFEST_NAME or bool(_BATCH_NAME.fullmatch(name)))
        if entry.attr & (_ATTR_DIRECTORY | _ATTR_VOLUME_ID) or not protocol_name:
            extra.append(f"{EXPORT_DIR}/{_printable(name)}" + ("/" if entry.attr & _ATTR_DIRECTORY else ""))
            continue
        if name in files:
            raise CorruptVolume(f"/{EXPORT_DIR} lists a file twice", file=name)
        files[name] = entry
    if MANIFEST_NAME not in files:
        raise NotAnExportVolume(f"no /{EXPORT_DIR}/{MANIFEST_NAME}")
    batches = tuple(sorted((n, e.filesize) for n, e in files.items() if n != MANIFEST_NAME))
    total = sum(size for _, size in batches)
    if total > limits.max_total_bytes:
        raise LimitExceeded("batch files larger in total than allowed", total=total, limit=limits.max_total_bytes)
    listing = ExportListing(
        label=label,
        fat_bits=int(pf.fat_type),
        manifest_size=files[MANIFEST_NAME].filesize,
        batches=batches,
        extra=tuple(extra),
    )
    return listing, files


@contextmanager
def _wrapped(what: str) -> Iterator[None]:
    """Turn every third-party error into ``CorruptVolume`` and ``OSError`` into ``DeviceGone``."""
    try:
        yield
    except IngestError:
        raise
    except OSError as e:
        raise DeviceGone(f"I/O error while {what}", errno=e.errno) from e
    except Exception as e:
        # PyFATException, ValueError, struct.error, RuntimeError, IndexError, KeyError, MemoryError,
        # UnicodeDecodeError, StopIteration, fs.errors.*: the bytes are not a usable FAT volume.
        raise CorruptVolume(f"not a readable FAT volume while {what} ({type(e).__name__})") from e
