"""A big tablet's pull: peak memory and time to the first sealed group, ``python -m bench.usb_big [--quick]``.

For each size (5,000 and 50,000 household sheets, 10 per batch; quick: 2,000
and 10,000) an export image is written by the tablet's own writer (set-up,
not timed; pyfatfs makes it slow for many files), then the real
``sanaq-usb-ingest pull IMAGE --no-forward --json`` process runs on a fresh
state directory with the shipped grouping (128 batches / 16 MiB). Measured
from the spawn:

* ``seconds``: until the process exits (every batch verified, durable in the
  spool, custody spooled);
* ``first_sealed_s``: until its first ``usb.batch.spooled`` line, i.e. the
  first group durable - the moment the service's forwarder is woken for it
  (``daemon.py``: each sealed group wakes the forwarder), so the earliest a
  batch can leave for the gateway (no gateway is involved here: the time to
  the first receipt adds one HTTP round trip and the gateway's commit);
* ``peak_rss_mib``: the process's peak resident memory (``VmHWM`` of
  ``/proc/PID/status``, polled every 5 ms until its output ends).

The memory a pull holds is bounded by the limits of ``VolumeLimits`` (FAT,
manifest, one batch file) plus a small per-file index; the two sizes show
what grows with the number of batches. The image is warm in the page cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .entry import bench_main
from .provenance import machine
from .usb_pull import UsbPlan, _setup

__all__ = ["BigPlan", "run_usb_big"]

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BigPlan:
    sizes: tuple[int, ...] = (5000, 50000)
    sheets_per_batch: int = 10

    @classmethod
    def quick(cls) -> BigPlan:
        return cls(sizes=(2000, 10000))


def _pull(image: Path, config: Path) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "usb_ingest", "pull", str(image), "--config", str(config),
                             "--no-forward", "--json"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.stderr is None or proc.stdout is None:  # pragma: no cover - both are pipes
        raise RuntimeError("no pipes")
    first_sealed = None
    spooled = 0
    peak_kib = 0
    done = threading.Event()

    def watch_hwm() -> None:  # VmHWM: the high-water mark of this exec'd image only (rusage's maxrss would
        nonlocal peak_kib      # include the pages of this big parent process before the child's exec)
        status = Path(f"/proc/{proc.pid}/status")
        while not done.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kib = max(peak_kib, int(line.split()[1]))
            except (OSError, ValueError):
                return
            done.wait(0.005)

    watcher = threading.Thread(target=watch_hwm)
    watcher.start()
    for raw in proc.stderr:
        if raw.startswith(b"{") and b'"usb.batch.spooled"' in raw:
            spooled += 1
            if first_sealed is None:
                first_sealed = time.perf_counter() - started
    out = proc.stdout.read()
    done.set()
    watcher.join()
    _, status, _usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    report = json.loads(out.decode().splitlines()[-1])
    return {"seconds": elapsed, "first_sealed_s": first_sealed, "peak_rss_mib": peak_kib / 1024,
            "exit": proc.returncode, "outcome": report["outcome"], "spooled": len(report["spooled"]),
            "logged_spooled": spooled}


def run_usb_big(plan: BigPlan, work: Path, log: Any = print) -> dict[str, Any]:
    from runtime.logs import configure_logging  # noqa: PLC0415

    configure_logging("warning", stream=Path(os.devnull).open("w"))  # noqa: SIM115 - dropped set-up logs
    result: dict[str, Any] = {"plan": {"sizes": list(plan.sizes), "sheets_per_batch": plan.sheets_per_batch},
                              "machine": machine(), "sizes": []}
    for sheets in plan.sizes:
        log(f"usb_big: building a {sheets}-sheet export image")
        base = work / f"s{sheets}"
        base.mkdir(parents=True)
        started = time.perf_counter()
        authority, image, config = _setup(base, UsbPlan(sheets=sheets, sheets_per_batch=plan.sheets_per_batch))
        authority.close()
        setup_s = time.perf_counter() - started
        toml = base / "usb-ingest.toml"
        toml.write_text(f'station_bundle = "{config.station_bundle}"\ngateway_url = "http://127.0.0.1:9"\n'
                        f'state_dir = "{base / "state"}"\nspool_min_free_bytes = 0\nlog_level = "info"\n')
        log(f"usb_big: pulling {sheets} sheets")
        run = _pull(image, toml)
        run.update(sheets=sheets, batches=sheets // plan.sheets_per_batch, image_bytes=image.stat().st_size,
                   setup_s=setup_s)
        log(f"  {sheets} sheets: {run['seconds']:.1f} s, first group sealed after {run['first_sealed_s']:.2f} s, "
            f"peak RSS {run['peak_rss_mib']:.0f} MiB ({run['outcome']})")
        result["sizes"].append(run)
    result["all_complete"] = all(r["outcome"] == "complete" and r["spooled"] == r["batches"] == r["logged_spooled"]
                                 for r in result["sizes"])
    return result


def main(argv: list[str] | None = None) -> int:
    return bench_main("usb_big", lambda quick: BigPlan.quick() if quick else BigPlan(), run_usb_big, argv)


if __name__ == "__main__":
    sys.exit(main())
