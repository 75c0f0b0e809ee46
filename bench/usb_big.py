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

Then the service's road, with a real gateway (``python -m gateway serve``,
plain HTTP on 127.0.0.1, SQLite store): the real service
(``sanaq-usb-ingest run``) inside the tests' umockdev bed
(``tests/usb_ingest/umockdev_bed.py``), the image plugged as a USB stick
once the service is ready, forwarded to that gateway while it is pulled.
Measured from the plug, by polling the gateway's store every 5 ms:

* ``first_stored_s``: until the first batch of the tablet is committed in
  the gateway's store - the time to first forward;
* ``pull_s``: until the service's ``usb.pull.finished`` line, and
  ``first_stored_before_pull_end`` whether the first batch was stored first;
* ``all_stored_s``: until the gateway holds every batch;
* ``rest_rss_mib`` / ``peak_rss_mib``: the daemon's ``VmRSS`` when ready
  and its ``VmHWM`` once every batch is stored, against
  ``bound_mib`` = ``VolumeLimits.pull_memory_bound`` for this volume (ADR 0007).

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
from .fleet import start_gateway
from .provenance import machine
from .usb_pull import DEVICE_ID, UsbPlan, _setup

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


def _s(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _vm_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _gateway_for(authority: Any, directory: Path) -> Path:
    """``gateway.toml`` (plain HTTP, port 0, SQLite) serving ``authority``'s keys and latest snapshot."""
    from keys.files import save_data_key, save_signing_key  # noqa: PLC0415

    directory.mkdir(parents=True)
    save_data_key(directory / "data.key", authority.data_private_key())
    save_signing_key(directory / "gateway.key", authority.gateway_signing_key())
    (directory / "registry.snapshot").write_bytes(authority.latest_snapshot())
    config = directory / "gateway.toml"
    config.write_text(
        f'database = "sqlite:///{directory / "census.db"}"\n'
        '[server]\nhost = "127.0.0.1"\nport = 0\nplain_http = true\nshutdown_timeout_s = 30\n'
        f'[keys]\nroot_public_key = "{bytes(authority.root_signing_key().verify_key).hex()}"\n'
        'data_key = "data.key"\nreceipt_key = "gateway.key"\nbootstrap_snapshot = "registry.snapshot"\n'
    )
    return config


def _stored(db: Path) -> int:
    import sqlite3  # noqa: PLC0415

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as conn:
            (n,) = conn.execute("SELECT count(*) FROM batches WHERE device_id = ?", (DEVICE_ID,)).fetchone()
        return int(n)
    except sqlite3.Error:  # not created yet, or busy for a moment
        return 0


def _forwarded(image: Path, base: Path, gateway_config: Path, batches: int) -> dict[str, Any]:
    """The daemon's code with a real gateway: time to the first batch stored, pull time, memory."""
    from usb_ingest.config import VolumeLimits  # noqa: PLC0415
    from usb_ingest.volume_fat import FatExportVolume  # noqa: PLC0415

    gateway = start_gateway(gateway_config)
    db = gateway_config.parent / "census.db"
    toml = base / "usb-ingest-forward.toml"
    toml.write_text(f'station_bundle = "{base / "bundle-station"}"\ngateway_url = "{gateway.url}"\n'
                    f'state_dir = "{base / "state-forward"}"\nspool_min_free_bytes = 0\nlog_level = "info"\n')
    with FatExportVolume.open(str(image), VolumeLimits()) as volume:
        manifest = len(volume.read_manifest())
    with image.open("rb") as f:
        boot = f.read(512)
    fat = int.from_bytes(boot[11:13], "little") * (int.from_bytes(boot[22:24], "little")
                                                    or int.from_bytes(boot[36:40], "little"))
    bound = VolumeLimits().pull_memory_bound(batches, fat_bytes=fat, manifest_bytes=manifest)
    from tests.usb_ingest.umockdev_bed import UmockdevBed  # noqa: PLC0415 - the tests' udev bed

    events: dict[str, float] = {}
    pulls: list[dict[str, Any]] = []
    rest_kib = peak_kib = None
    first = every = plugged = None
    bed = UmockdevBed.start()
    try:
        env = bed.env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        proc = subprocess.Popen([sys.executable, "-m", "usb_ingest", "run", "--config", str(toml)], cwd=REPO,
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if proc.stdout is None:  # pragma: no cover - a pipe
            raise RuntimeError("no pipe")
        stdout = proc.stdout
        ready = threading.Event()

        def read_lines() -> None:
            for raw in stdout:
                for name in ("usb.daemon.ready", "usb.pull.started", "usb.pull.finished"):
                    if f'"{name}"'.encode() in raw and name not in events:
                        events[name] = time.perf_counter()
                        if name == "usb.daemon.ready":
                            ready.set()
                if b'"usb.pull.finished"' in raw:
                    line = json.loads(raw)
                    pulls.append({"outcome": line.get("outcome"), "spooled": line.get("spooled"),
                                  "source": line.get("source")})
            ready.set()

        reader = threading.Thread(target=read_lines, daemon=True)
        reader.start()
        try:
            ready.wait(120)
            rest_kib = _vm_kib(proc.pid, "VmRSS")
            plugged = time.perf_counter()
            bed.plug(image, serial="SER-BENCH-1")
            deadline = plugged + 600
            while every is None and time.perf_counter() < deadline and proc.poll() is None:
                n = _stored(db)
                now = time.perf_counter()
                if n and first is None:
                    first = now
                if n >= batches:
                    every = now
                time.sleep(0.005)
            peak_kib = _vm_kib(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait(60)
            reader.join(10)
    finally:
        bed.close()
        gateway.stop()
    finished = events.get("usb.pull.finished")

    def since(t: float | None) -> float | None:
        return None if t is None or plugged is None else t - plugged

    return {"first_stored_s": since(first), "pull_s": since(finished), "all_stored_s": since(every),
            "first_stored_before_pull_end": first is not None and finished is not None and first < finished,
            "stored": _stored(db), "pulls": pulls, "rest_rss_mib": rest_kib / 1024 if rest_kib else None,
            "peak_rss_mib": peak_kib / 1024 if peak_kib else None, "bound_mib": bound / 2**20,
            "within_bound": bool(rest_kib and peak_kib and (peak_kib - rest_kib) * 1024 <= bound)}


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
        gateway_config = _gateway_for(authority, base / "gateway")
        authority.close()
        setup_s = time.perf_counter() - started
        toml = base / "usb-ingest.toml"
        toml.write_text(f'station_bundle = "{config.station_bundle}"\ngateway_url = "http://127.0.0.1:9"\n'
                        f'state_dir = "{base / "state"}"\nspool_min_free_bytes = 0\nlog_level = "info"\n')
        log(f"usb_big: pulling {sheets} sheets")
        run = _pull(image, toml)
        batches = sheets // plan.sheets_per_batch
        run.update(sheets=sheets, batches=batches, image_bytes=image.stat().st_size, setup_s=setup_s)
        log(f"  {sheets} sheets: {run['seconds']:.1f} s, first group sealed after {run['first_sealed_s']:.2f} s, "
            f"peak RSS {run['peak_rss_mib']:.0f} MiB ({run['outcome']})")
        log(f"usb_big: {sheets} sheets through the service to a gateway")
        fwd = _forwarded(image, base, gateway_config, batches)
        run["service"] = fwd
        log(f"  first batch stored by the gateway {_s(fwd['first_stored_s'])} s after the plug, pull ended "
            f"{_s(fwd['pull_s'])} s, all stored {_s(fwd['all_stored_s'])} s, RSS {_s(fwd['rest_rss_mib'], 0)} -> "
            f"{_s(fwd['peak_rss_mib'], 0)} MiB (bound +{fwd['bound_mib']:.0f} MiB)")
        result["sizes"].append(run)
    result["all_complete"] = all(r["outcome"] == "complete" and r["spooled"] == r["batches"] == r["logged_spooled"]
                                 and r["service"]["stored"] == r["batches"] for r in result["sizes"])
    return result


def main(argv: list[str] | None = None) -> int:
    return bench_main("usb_big", lambda quick: BigPlan.quick() if quick else BigPlan(), run_usb_big, argv)


if __name__ == "__main__":
    sys.exit(main())
