"""Write the USB export volume: a FAT filesystem holding a signed manifest and the batch envelopes.

Layout (``wire.manifest``; ``docs/protocol.md`` section "USB export volume")::

    FAT16 (FAT32 above 1 GiB), label SANAQEXPORT in the boot sector and as the
    root directory's volume-label entry, 8.3 names only (no long-name entries)
    /SANAQ/MANIFEST.SQM     manifest signed by the device key
    /SANAQ/NNNNNNNN.SQB     the stored envelope bytes of batch seq NNNNNNNN

The volume is built in user space with pyfatfs in a temporary image file, read
back and checked (every file's bytes against the manifest) before it reaches the
target, then:

* a regular file (or a new path) is replaced atomically: temp image in the same
  directory, fsync, rename, fsync the directory;
* a block device, or a file written ``in_place`` (e.g. the backing file of a USB
  mass-storage gadget, which must keep its inode), gets the image written from
  byte 0 and fsynced. The filesystem is sized to the content, not to the target;
  bytes past its end are left as they were (they are never part of it). Block
  devices are opened ``O_EXCL``, which Linux refuses while the device is mounted.

The volume carries only ciphertext and signed metadata. Exporting changes
nothing in the outbox: batches stay pending until a receipt or sync state
covers them.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from nacl.signing import SigningKey
from pyfatfs.EightDotThree import EightDotThree
from pyfatfs.FATDirectoryEntry import FATDirectoryEntry
from pyfatfs.PyFat import PyFat
from pyfatfs.PyFatFS import PyFatFS

from wire import EXPORT_DIR, MANIFEST_NAME, VOLUME_LABEL, ManifestEntry, batch_file_name, make_manifest, parse_manifest

from .errors import ExportError, ExportTargetError, NothingToExportError
from .fat_volume import FatPlan, fix_label_and_fsinfo, plan_volume
from .outbox_schema import StoredBatch

__all__ = ["DEFAULT_MAX_EXPORT_BATCHES", "ExportResult", "export_files", "write_export_volume"]

DEFAULT_MAX_EXPORT_BATCHES = 50_000  # keeps the manifest under wire's 8 MiB manifest limit
_COPY_CHUNK = 1024 * 1024

log = structlog.get_logger("tablet.usb_export")


@dataclass(frozen=True, slots=True)
class ExportResult:
    target: str
    seqs: tuple[int, ...]
    left_out: int  # pending batches not exported because of the manifest cap (next export takes them)
    manifest_sha256: bytes
    fat_type: int  # 16 or 32
    volume_bytes: int


def export_files(
    batches: Sequence[StoredBatch], *, device_id: str, usb_serial: str, created_at_ms: int, device_key: SigningKey
) -> dict[str, bytes]:
    """The volume's files by path ("SANAQ/MANIFEST.SQM", "SANAQ/00000001.SQB", ...), manifest self-checked."""
    ordered = sorted(batches, key=lambda b: b.seq)
    entries = [
        ManifestEntry(batch_file_name(b.seq), b.seq, b.size, hashlib.sha256(b.envelope).digest()) for b in ordered
    ]
    manifest = make_manifest(
        device_id=device_id, usb_serial=usb_serial, created_at_ms=created_at_ms, batches=entries, device_key=device_key
    )
    parse_manifest(manifest, bytes(device_key.verify_key))  # what we write must be what a station accepts
    files = {f"{EXPORT_DIR}/{MANIFEST_NAME}": manifest}
    files.update({f"{EXPORT_DIR}/{e.file}": b.envelope for e, b in zip(entries, ordered, strict=True)})
    return files


def _build_image(path: Path, files: dict[str, bytes], plan: FatPlan, volume_id: int) -> None:
    """mkfs and the export directory through pyfatfs's filesystem API; the files through its FAT layer.

    PyFatFS resolves every path by scanning the directory, so writing n files
    through it costs O(n^2) (minutes for a few thousand batches); allocating the
    cluster chains and adding the entries directly, then writing the directory
    once, is linear.
    """
    pf = PyFat()
    pf.mkfs(str(path), fat_type=plan.pyfat_type, size=plan.size, label=VOLUME_LABEL, volume_id=volume_id)
    pf.close()
    fs = PyFatFS(str(path), read_only=False, preserve_case=False)
    try:
        fs.makedir(EXPORT_DIR)
        fat = fs.fs
        directory = fat.root_dir.get_entry(EXPORT_DIR)
        for name in sorted(files):
            data = files[name]
            short = EightDotThree(encoding=fat.encoding)
            short.set_str_name(name.rsplit("/", 1)[1])  # raises unless a plain 8.3 name
            first = fat.allocate_bytes(len(data))[0]
            fat.write_data_to_cluster(data, first)
            directory.add_subdirectory(
                FATDirectoryEntry.new(name=short, tz=fs.tz, encoding=fat.encoding, cluster=first, filesize=len(data))
            )
        fat.update_directory_entry(directory)
        fat.flush_fat()
    finally:
        fs.close()
    fix_label_and_fsinfo(path, VOLUME_LABEL)


def _check_image(path: Path, files: dict[str, bytes]) -> None:
    """Read the image back with pyfatfs (read-only) and compare names and bytes."""
    fat = PyFat()
    fat.open(str(path), read_only=True)
    try:
        dirs, top_files, _ = fat.root_dir.get_entries()
        if [d.get_short_name() for d in dirs] != [EXPORT_DIR] or top_files:
            raise ExportError("export image root holds other entries than written", path=str(path))
        found = {}
        for entry in dirs[0].get_entries()[1]:
            chunks = [fat.read_cluster_contents(c) for c in fat.get_cluster_chain(entry.get_cluster())]
            found[f"{EXPORT_DIR}/{entry.get_short_name()}"] = b"".join(chunks)[: entry.filesize]
    finally:
        fat.close()
    if set(found) != set(files):
        raise ExportError("export image lists other files than written", path=str(path))
    for name, data in files.items():
        if found[name] != data:
            raise ExportError("export image holds other bytes than written", file=name)


def _fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_in_place(image: Path, target: Path, *, block_device: bool) -> None:
    flags = os.O_WRONLY | (os.O_EXCL if block_device else 0)
    try:
        fd = os.open(target, flags)
    except OSError as e:
        raise ExportTargetError("cannot open the export target for writing", path=str(target), errno=e.errno) from e
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        needed = image.stat().st_size
        if size < needed:
            raise ExportTargetError("export target too small", path=str(target), size=size, needed=needed)
        os.lseek(fd, 0, os.SEEK_SET)
        with image.open("rb") as src:
            while chunk := src.read(_COPY_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _target_kind(target: Path, in_place: bool | None) -> str:
    """"replace" (atomic rename) or "in_place" / "device" (overwrite from byte 0)."""
    try:
        st = target.stat()
    except FileNotFoundError:
        if in_place:
            raise ExportTargetError("in-place export needs an existing target", path=str(target)) from None
        return "replace"
    if stat.S_ISBLK(st.st_mode):
        return "device"
    if not stat.S_ISREG(st.st_mode):
        raise ExportTargetError("export target is neither a regular file nor a block device", path=str(target))
    return "in_place" if in_place else "replace"


def write_export_volume(
    target: str | os.PathLike[str],
    batches: Sequence[StoredBatch],
    *,
    device_id: str,
    usb_serial: str,
    device_key: SigningKey,
    now_ms: int,
    in_place: bool | None = None,
    fat_bits: int | None = None,
    max_batches: int = DEFAULT_MAX_EXPORT_BATCHES,
) -> ExportResult:
    """Write the export volume for ``batches`` (the outbox's pending ones) to ``target``.

    ``fat_bits`` (16 or 32) overrides the size-based choice; ``max_batches``
    caps one volume (lowest seqs first; ``left_out`` counts the rest).
    """
    if not batches:
        raise NothingToExportError("no pending batch to export", device_id=device_id)
    target = Path(target)
    kind = _target_kind(target, in_place)
    chosen = sorted(batches, key=lambda b: b.seq)[:max_batches]
    files = export_files(chosen, device_id=device_id, usb_serial=usb_serial, created_at_ms=now_ms,
                         device_key=device_key)
    manifest_sha = hashlib.sha256(files[f"{EXPORT_DIR}/{MANIFEST_NAME}"]).digest()
    plan = plan_volume([len(d) for d in files.values()], fat_bits=fat_bits)
    volume_id = int.from_bytes(manifest_sha[:4], "big")
    work_dir = target.parent if kind == "replace" else None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=work_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            with warnings.catch_warnings():  # pyfatfs warns about its own choices (e.g. cluster counts)
                warnings.simplefilter("ignore")
                _build_image(tmp, files, plan, volume_id)
                _check_image(tmp, files)
        except ExportError:
            raise
        except Exception as e:  # pyfatfs raises its own and OSError; the image is ours, so this is our failure
            raise ExportError("building the FAT image failed", path=str(tmp)) from e
        if kind == "replace":
            _fsync_path(tmp)
            tmp.replace(target)
            _fsync_path(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        else:
            _write_in_place(tmp, target, block_device=kind == "device")
    finally:
        tmp.unlink(missing_ok=True)
    result = ExportResult(
        target=str(target),
        seqs=tuple(b.seq for b in chosen),
        left_out=len(batches) - len(chosen),
        manifest_sha256=manifest_sha,
        fat_type=plan.fat_bits,
        volume_bytes=plan.size,
    )
    log.info("usb.export.written", device_id=device_id, batches=len(chosen), left_out=result.left_out,
             fat=plan.fat_bits, volume_bytes=plan.size, mode=kind)
    return result
