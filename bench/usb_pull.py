"""USB pull against reading and hashing the same image: ``python -m bench.usb_pull [--quick]``.

Set-up (not timed): an authority, one enrolled tablet and one station made
with ``keys``; 5,000 household sheets sealed by the tablet in batches of 10;
the export volume image written by the tablet's own writer
(``tablet.usb_export.write_export_volume``); the station opened on a fresh
state directory (``usb_ingest.station.Station``).

Timed, alternately, ``repeats`` times each:

* **pull**: ``Station.pull_volume(image)`` from the call ("the volume
  appears") to its return, when every batch is verified (manifest signature,
  SHA-256 against the manifest, envelope signature) and durably in the spool
  (temp file, fsync, read back, rename, fsync directory) and the custody
  record is spooled. Each repeat uses a fresh state directory.
* **baseline**: read the same image file sequentially (1 MiB reads) and
  SHA-256 it.

Both start cold: the image's pages are dropped from the page cache
(``posix_fadvise(DONTNEED)``) before each run, as a freshly plugged device
would be; the warm-cache numbers are reported too. The image is a file on
the local disk, so the baseline is the disk's (or page cache's) speed, far
above a USB 2.0 bus (~35 MB/s); the ratio compares the daemon with the
cheapest possible full read of the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .entry import bench_main
from .profiling import profile_self, summarise_profile

__all__ = ["UsbPlan", "run_usb_pull"]

DEVICE_ID = "TAB-BENCH-1"
STATION_ID = "ST-BENCH"


@dataclass(frozen=True)
class UsbPlan:
    sheets: int = 5000
    sheets_per_batch: int = 10
    repeats: int = 3
    profile: bool = True

    @classmethod
    def quick(cls) -> UsbPlan:
        return cls(repeats=2)


def _drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _read_and_hash(path: Path) -> tuple[float, str]:
    started = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return time.perf_counter() - started, digest.hexdigest()


def _fat_read(image: Path) -> float:
    """The user-space FAT parser alone: open the volume, read and SHA-256 every file (no verify, no spool)."""
    from usb_ingest.config import VolumeLimits  # noqa: PLC0415
    from usb_ingest.volume_fat import FatExportVolume  # noqa: PLC0415

    started = time.perf_counter()
    with FatExportVolume.open(str(image), VolumeLimits()) as volume:
        hashlib.sha256(volume.read_manifest()).digest()
        for name, _ in volume.listing.batches:
            hashlib.sha256(volume.read_batch(name)).digest()
    return time.perf_counter() - started


def seal_batches(device_id: str, device_key: Any, data_public_key: bytes, sheets: int, per: int,
                 now_ms: int) -> list[Any]:
    """``sheets`` household sheets of one generated stream, sealed ``per`` to a batch (seqs from 1).

    The stream is generated once and cut: ``generate_sheets(start=...)`` walks
    the stream from its beginning, so one call per batch would be quadratic
    (minutes for 50,000 sheets).
    """
    from tablet.generator import generate_sheets  # noqa: PLC0415 - heavy, only for the USB benches and tests
    from tablet.outbox_schema import StoredBatch  # noqa: PLC0415
    from wire import seal_batch  # noqa: PLC0415

    from .workload import HOUSEHOLDS  # noqa: PLC0415

    stream = generate_sheets(1, sheets, device_id=device_id, mix=HOUSEHOLDS)
    batches = []
    for seq in range(1, sheets // per + 1):
        envelope = seal_batch(device_id=device_id, seq=seq, sheets=stream[(seq - 1) * per : seq * per],
                              sealed_at_ms=now_ms, device_key=device_key, data_public_key=data_public_key,
                              ephemeral_secret=os.urandom(32))
        batches.append(StoredBatch(seq, envelope, hashlib.sha256(envelope).digest(), per, now_ms))
    return batches


def _setup(work: Path, plan: UsbPlan) -> tuple[Any, Path, Any]:
    """Authority, tablet and station bundles, and the export image; returns (authority, image, config)."""
    from keys import Authority, enroll_station, enroll_tablet  # noqa: PLC0415 - heavy, only for this bench
    from tablet.usb_export import write_export_volume  # noqa: PLC0415
    from usb_ingest.config import IngestConfig  # noqa: PLC0415

    now = time.time_ns() // 1_000_000
    authority = Authority.create(work / "authority", now_ms=now)
    tablet = enroll_tablet(
        authority,
        work / "bundle-tablet",
        device_id=DEVICE_ID,
        usb_serial="SER-BENCH-1",
        institution="AB-000001",
        worker_id="W-1",
        gateway_url="https://127.0.0.1:8443",
        now_ms=now,
    )
    enroll_station(
        authority, work / "bundle-station", station_id=STATION_ID, gateway_url="https://127.0.0.1:8443", now_ms=now
    )
    batches = seal_batches(DEVICE_ID, tablet.signing_key, authority.data_public_key, plan.sheets,
                           plan.sheets_per_batch, now)
    image = work / "export.img"
    write_export_volume(
        image, batches, device_id=DEVICE_ID, usb_serial="SER-BENCH-1", device_key=tablet.signing_key, now_ms=now
    )
    config = IngestConfig(
        station_bundle=work / "bundle-station",
        gateway_url="http://127.0.0.1:9",
        state_dir=work / "state",
        spool_min_free_bytes=0,
    )
    return authority, image, config


def _pull_once(config: Any, image: Path, state: Path, *, cold: bool, profile_to: Path | None = None) -> dict[str, Any]:
    import dataclasses  # noqa: PLC0415

    from usb_ingest.station import Station  # noqa: PLC0415

    shutil.rmtree(state, ignore_errors=True)
    station = Station.open(dataclasses.replace(config, state_dir=state))
    try:
        if cold:
            _drop_cache(image)
        with profile_self(profile_to) if profile_to is not None else contextlib.nullcontext(False):
            started = time.perf_counter()
            report = station.pull_volume(str(image))
            elapsed = time.perf_counter() - started
        counts = station.spool.counts()
    finally:
        station.close()
    return {
        "seconds": elapsed,
        "outcome": report.outcome,
        "spooled": len(report.spooled),
        "bytes": report.bytes_spooled,
        "custody": report.custody_spooled,
        "problems": len(report.problems),
        "spool_pending": getattr(counts, "pending", None),
    }


def run_usb_pull(plan: UsbPlan, work: Path, log: Any = print) -> dict[str, Any]:
    from runtime.logs import configure_logging  # noqa: PLC0415

    sink = Path(os.devnull).open("w")  # noqa: SIM115 - the daemon's JSON log lines, rendered then dropped
    configure_logging("info", stream=sink)
    log(f"usb_pull: building a {plan.sheets}-sheet export image")
    started = time.perf_counter()
    authority, image, config = _setup(work, plan)
    setup_s = time.perf_counter() - started
    size = image.stat().st_size
    payload = plan.sheets // plan.sheets_per_batch
    runs: dict[str, list[dict[str, Any]]] = {
        "pull_cold": [],
        "pull_warm": [],
        "hash_cold": [],
        "hash_warm": [],
        "fat_read_warm": [],
    }
    digest = ""
    for n in range(plan.repeats):
        log(f"usb_pull: repeat {n + 1}/{plan.repeats}")
        runs["pull_cold"].append(_pull_once(config, image, work / "state", cold=True))
        runs["pull_warm"].append(_pull_once(config, image, work / "state", cold=False))
        _drop_cache(image)
        seconds, digest = _read_and_hash(image)
        runs["hash_cold"].append({"seconds": seconds})
        seconds, digest = _read_and_hash(image)
        runs["hash_warm"].append({"seconds": seconds})
        runs["fat_read_warm"].append({"seconds": _fat_read(image)})
    profile: dict[str, Any] | None = None
    if plan.profile:
        raw = work / "pull-profile.txt"
        _pull_once(config, image, work / "state", cold=False, profile_to=raw)
        if raw.exists():
            profile = summarise_profile(raw, within="pull_volume")
    authority.close()
    sink.close()

    def median(kind: str) -> float:
        return statistics.median(r["seconds"] for r in runs[kind])

    result: dict[str, Any] = {
        "plan": plan.__dict__,
        "setup_s": setup_s,
        "image_bytes": size,
        "image_sha256": digest,
        "batches": payload,
        "sheets": plan.sheets,
        "runs": runs,
        "all_complete": all(
            r["outcome"] == "complete" and r["spooled"] == payload and r["custody"]
            for r in runs["pull_cold"] + runs["pull_warm"]
        ),
        "profile": profile,
    }
    result["fat_read_warm"] = {"seconds": median("fat_read_warm"), "mb_per_s": size / median("fat_read_warm") / 1e6}
    for temp in ("cold", "warm"):
        pull_s, hash_s = median(f"pull_{temp}"), median(f"hash_{temp}")
        result[temp] = {
            "pull_s": pull_s,
            "pull_mb_per_s": size / pull_s / 1e6,
            "pull_sheets_per_s": plan.sheets / pull_s,
            "hash_s": hash_s,
            "hash_mb_per_s": size / hash_s / 1e6,
            "hash_sheets_per_s": plan.sheets / hash_s,
            "ratio_pull_to_hash": hash_s / pull_s,
        }
    log(
        f"  cold: pull {result['cold']['pull_mb_per_s']:.1f} MB/s, read+hash {result['cold']['hash_mb_per_s']:.0f} "
        f"MB/s, ratio {result['cold']['ratio_pull_to_hash']:.3f}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    return bench_main("usb_pull", lambda quick: UsbPlan.quick() if quick else UsbPlan(), run_usb_pull, argv)


if __name__ == "__main__":
    sys.exit(main())
