"""A durable USB pull against a durable copy of the same bytes: ``python -m bench.usb_durable [--quick]``.

The target of ADR 0007 (issue 20): a pull at least **0.5x** the speed of the
physical limit of a durable pull on this disk, which is:

* **durable copy**: open the same export image with the same user-space FAT
  reader, read every file (manifest and batches) and write it under the same
  name into an empty directory on the spool's filesystem, then one flush
  (``syncfs``) and one fsync of the directory. No verification, no temp names,
  no renames.

Against it, from a fresh state directory each time:

* **pull**: ``Station.pull_volume(image)`` with the shipped grouping
  (``spool_group_batches`` 128, ``spool_group_bytes`` 16 MiB): manifest and
  envelope signatures verified, SHA-256 against the manifest, batches durable
  a group at a time (stage, one syncfs, read back, rename, one directory
  fsync), custody record spooled;
* **pull, groups of 1**: the same with ``spool_group_batches = 1``, i.e. a
  flush and a directory fsync per batch, as the spool did before ADR 0007.

Cold: the image's pages are dropped before each run (a freshly plugged
device). Runs alternate; medians are reported; ``ratio_pull_to_copy`` is
copy seconds / pull seconds. The result records the machine and the commit.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .entry import bench_main
from .provenance import machine
from .usb_pull import UsbPlan, _drop_cache, _pull_once, _setup

__all__ = ["DurablePlan", "run_usb_durable"]


@dataclass(frozen=True)
class DurablePlan:
    sheets: int = 5000
    sheets_per_batch: int = 10
    repeats: int = 5

    @classmethod
    def quick(cls) -> DurablePlan:
        return cls(sheets=2000, repeats=2)


def _durable_copy(image: Path, dest: Path) -> dict[str, Any]:
    from usb_ingest.config import VolumeLimits  # noqa: PLC0415
    from usb_ingest.receipt_log import fsync_dir  # noqa: PLC0415
    from usb_ingest.spool_group import flush_filesystem  # noqa: PLC0415
    from usb_ingest.volume_fat import FatExportVolume  # noqa: PLC0415

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    _drop_cache(image)
    written: list[Path] = []
    total = 0
    started = time.perf_counter()
    with FatExportVolume.open(str(image), VolumeLimits()) as volume:
        files = [("MANIFEST.SQM", volume.read_manifest)] + [
            (name, lambda name=name: volume.read_batch(name)) for name, _ in volume.listing.batches]
        for name, read in files:
            data = read()
            path = dest / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            written.append(path)
            total += len(data)
    flush_filesystem(dest, written)
    fsync_dir(dest)
    return {"seconds": time.perf_counter() - started, "files": len(written), "bytes": total}


def run_usb_durable(plan: DurablePlan, work: Path, log: Any = print) -> dict[str, Any]:
    from runtime.logs import configure_logging  # noqa: PLC0415

    sink = Path(os.devnull).open("w")  # noqa: SIM115 - the daemon's JSON log lines, rendered then dropped
    configure_logging("info", stream=sink)
    log(f"usb_durable: building a {plan.sheets}-sheet export image")
    authority, image, config = _setup(work, UsbPlan(sheets=plan.sheets, sheets_per_batch=plan.sheets_per_batch))
    one_by_one = dataclasses.replace(config, spool_group_batches=1)
    runs: dict[str, list[dict[str, Any]]] = {"pull": [], "pull_groups_of_1": [], "durable_copy": []}
    for n in range(plan.repeats):
        log(f"usb_durable: repeat {n + 1}/{plan.repeats}")
        runs["durable_copy"].append(_durable_copy(image, work / "copy"))
        runs["pull"].append(_pull_once(config, image, work / "state", cold=True))
        runs["pull_groups_of_1"].append(_pull_once(one_by_one, image, work / "state", cold=True))
    authority.close()
    sink.close()
    batches = plan.sheets // plan.sheets_per_batch

    def median(kind: str) -> float:
        return statistics.median(r["seconds"] for r in runs[kind])

    size = image.stat().st_size
    copied = runs["durable_copy"][0]["bytes"]
    result: dict[str, Any] = {
        "plan": plan.__dict__,
        "machine": machine(),
        "image_bytes": size,
        "batch_bytes": copied,
        "batches": batches,
        "runs": runs,
        "all_complete": all(r["outcome"] == "complete" and r["spooled"] == batches and r["custody"]
                            for r in runs["pull"] + runs["pull_groups_of_1"]),
    }
    for kind in runs:
        result[kind] = {"seconds": median(kind), "mb_per_s": copied / median(kind) / 1e6,
                        "sheets_per_s": plan.sheets / median(kind)}
    result["ratio_pull_to_copy"] = median("durable_copy") / median("pull")
    result["ratio_groups_of_1_to_copy"] = median("durable_copy") / median("pull_groups_of_1")
    log(f"  durable copy {result['durable_copy']['mb_per_s']:.1f} MB/s, pull {result['pull']['mb_per_s']:.1f} MB/s "
        f"(ratio {result['ratio_pull_to_copy']:.2f}), groups of 1 {result['pull_groups_of_1']['mb_per_s']:.1f} MB/s "
        f"(ratio {result['ratio_groups_of_1_to_copy']:.3f})")
    return result


def main(argv: list[str] | None = None) -> int:
    return bench_main("usb_durable", lambda quick: DurablePlan.quick() if quick else DurablePlan(), run_usb_durable,
                      argv)


if __name__ == "__main__":
    sys.exit(main())
