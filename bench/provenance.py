"""Where a benchmark result comes from: source tree, machine, load and the exact command.

Every benchmark writes its result through ``bench.entry.bench_main``, which
wraps the run in ``Recorder``; the result file then carries a
``provenance`` object:

* ``source``: the commit (full hash), whether the tree differed from it
  (``dirty``) and a SHA-256 over those differences (``git diff HEAD`` of
  tracked files plus the path and content of every untracked, not ignored
  file), so two dirty runs can be told apart. The bench's own outputs
  (``bench/results/``, ``docs/benchmarks.md``) are left out: a run writes them.
  ``source_after`` is the same taken at the end; ``changed_during_run`` says
  whether they differ (a result measured while the code changed).
* ``gateway_source``: the same for ``$SANAQ_BENCH_GATEWAY_SRC`` when the
  gateway under test runs from another tree (A/B runs), else absent.
* ``started_at`` / ``finished_at`` (UTC, ISO 8601) and ``elapsed_s``.
* ``machine``: CPUs usable (affinity) and online, CPU model, RAM, kernel, Python.
* ``load``: ``before`` (load averages and the cores busy over one second
  before the run) and ``during`` (sampled every second: mean and max of the
  1-minute load average, cores busy on the machine, cores used by this
  benchmark and its waited-for children, and the difference: other programs).
* ``command``: the exact argv (interpreter included), working directory, the
  ``SANAQ_BENCH_*`` environment, and the parent command when ``bench.run_all``
  started it.

``bench.report`` refuses to put results of different provenance on one page
unless told (``--allow-mixed``) and refuses a result without provenance.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import resource
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["PARENT_ENV", "Recorder", "command_line", "identity", "load_now", "machine", "source_state"]

REPO = Path(__file__).resolve().parent.parent
PARENT_ENV = "SANAQ_BENCH_PARENT_COMMAND"
SCHEMA = 1
# Written by the benchmarks themselves: not a change of the measured source.
_OUTPUTS = ("bench/results", "docs/benchmarks.md")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _git(tree: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=tree, capture_output=True, check=True).stdout


def source_state(tree: Path = REPO) -> dict[str, Any]:
    """Commit, dirty flag and a hash of the differences from it; ``{"commit": None, ...}`` outside git."""
    excludes = [f":(exclude){p}" for p in _OUTPUTS]
    try:
        commit = _git(tree, "rev-parse", "HEAD").decode().strip()
        diff = _git(tree, "diff", "HEAD", "--binary", "--no-color", "--", ".", *excludes)
        untracked = sorted(
            p for p in _git(tree, "ls-files", "--others", "--exclude-standard", "-z", "--", ".", *excludes)
            .decode(errors="surrogateescape").split("\0") if p
        )
    except (OSError, subprocess.CalledProcessError):
        return {"tree": str(tree), "commit": None, "dirty": None, "diff_sha256": None, "untracked_files": None}
    h = hashlib.sha256(diff)
    for rel in untracked:
        h.update(b"\0untracked\0" + rel.encode(errors="surrogateescape") + b"\0")
        try:
            h.update(hashlib.sha256((tree / rel).read_bytes()).digest())
        except OSError:
            h.update(b"unreadable")
    dirty = bool(diff) or bool(untracked)
    return {
        "tree": str(tree),
        "commit": commit,
        "dirty": dirty,
        "diff_sha256": h.hexdigest() if dirty else None,
        "diff_bytes": len(diff),
        "untracked_files": len(untracked),
    }


def machine() -> dict[str, Any]:
    """The host: CPUs this process may use and CPUs online, model, RAM, kernel, Python."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = next(int(ln.split()[1]) for ln in meminfo.splitlines() if ln.startswith("MemTotal:"))
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpus_online": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def _busy_s() -> float:
    """Seconds of CPU the whole machine has been busy (all but idle and iowait) since boot."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _CLK_TCK


def _own_cpu_s() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def load_now(window_s: float = 1.0) -> dict[str, Any]:
    """Load averages and the cores busy on the machine over ``window_s`` (sleeps that long)."""
    t0, b0 = time.monotonic(), _busy_s()
    time.sleep(window_s)
    t1, b1 = time.monotonic(), _busy_s()
    return {"loadavg_1_5_15": _loadavg(), "busy_cores": round((b1 - b0) / (t1 - t0), 3), "window_s": window_s}


def _command(argv: list[str]) -> dict[str, Any]:
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("SANAQ_BENCH_") and k != PARENT_ENV}
    out: dict[str, Any] = {"argv": argv, "cwd": os.getcwd(), "env": env}
    if os.environ.get(PARENT_ENV):
        out["parent"] = os.environ[PARENT_ENV]
    return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Recorder:
    """Provenance of one benchmark run: ``start()`` before it, ``finish()`` after; samples load meanwhile."""

    def __init__(self, argv: list[str], *, period_s: float = 1.0, before_window_s: float = 1.0) -> None:
        self._argv = argv
        self._period = period_s
        self._before_window = before_window_s
        self._samples: list[tuple[float, float, float, float]] = []  # (monotonic, load1, machine busy, own cpu)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, name="provenance-load", daemon=True)
        self._record: dict[str, Any] = {}

    def start(self) -> None:
        gateway_src = os.environ.get("SANAQ_BENCH_GATEWAY_SRC")
        self._record = {
            "schema": SCHEMA,
            "command": _command(self._argv),
            "source": source_state(),
            **({"gateway_source": source_state(Path(gateway_src))} if gateway_src else {}),
            "machine": machine(),
            "started_at": _now(),
            "load": {"before": load_now(self._before_window)},
        }
        self._started = time.monotonic()
        self._samples.append(self._sample())
        self._thread.start()

    def _sample(self) -> tuple[float, float, float, float]:
        return time.monotonic(), _loadavg()[0], _busy_s(), _own_cpu_s()

    def _sample_loop(self) -> None:
        while not self._stop.wait(self._period):
            self._samples.append(self._sample())

    def finish(self) -> dict[str, Any]:
        """Stop sampling; returns the provenance object to store under ``"provenance"``."""
        self._stop.set()
        self._thread.join()
        self._samples.append(self._sample())
        first, last = self._samples[0], self._samples[-1]
        wall = last[0] - first[0]
        # /proc/stat counts in clock ticks (10 ms): shares over less than a second would be noise.
        busy = (last[2] - first[2]) / wall if wall >= 1.0 else None
        own = (last[3] - first[3]) / wall if wall >= 1.0 else None
        rates = [(b[2] - a[2]) / (b[0] - a[0]) for a, b in zip(self._samples, self._samples[1:], strict=False)
                 if b[0] - a[0] >= 0.5]
        loads = [s[1] for s in self._samples]
        after = source_state()
        record = dict(self._record)
        record["load"] = {
            **record["load"],
            "during": {
                "loadavg_1_mean": round(sum(loads) / len(loads), 2),
                "loadavg_1_max": max(loads),
                "busy_cores_mean": None if busy is None else round(busy, 3),
                "busy_cores_max": round(max(rates), 3) if rates else None,
                "own_cores_mean": None if own is None else round(own, 3),
                "other_cores_mean": None if busy is None or own is None else round(max(0.0, busy - own), 3),
                "samples": len(self._samples),
            },
        }
        record["finished_at"] = _now()
        record["elapsed_s"] = round(time.monotonic() - self._started, 1)
        record["source_after"] = after
        record["changed_during_run"] = (after["commit"], after["diff_sha256"]) != (
            record["source"]["commit"],
            record["source"]["diff_sha256"],
        )
        return record


def identity(provenance: dict[str, Any]) -> tuple[Any, ...]:
    """What must be equal for two results to share a page: source (and gateway source) and machine."""
    src = provenance.get("source", {})
    gw = provenance.get("gateway_source") or {}
    m = provenance.get("machine", {})
    return (
        src.get("commit"),
        src.get("diff_sha256"),
        gw.get("commit"),
        gw.get("diff_sha256"),
        m.get("cpu_model"),
        m.get("nproc"),
        m.get("kernel"),
    )


def command_line(argv: list[str]) -> str:
    """``argv`` as one shell-quoted line, for the page."""
    return " ".join(shlex.quote(a) for a in argv)


if __name__ == "__main__":  # python -m bench.provenance: what a run started now would record
    import json

    rec = Recorder([sys.executable, "-m", "bench.provenance"], before_window_s=0.2)
    rec.start()
    print(json.dumps(rec.finish(), indent=2))
