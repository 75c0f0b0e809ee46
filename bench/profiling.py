"""Sampling profiles of a running server with py-spy, summarised as top frames.

py-spy is optional: when ``py-spy`` is not next to the interpreter or on
PATH, ``start_profile`` returns None and the bench runs without a profile.
The summary gives, over all sampled threads, the share of the samples of
each innermost frame with its line ("self": the line of ``os.fsync(fd)`` is
where an fsync wait lands) and of the watched functions anywhere on the
stack ("inclusive", line numbers dropped).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["profile_self", "py_spy", "start_profile", "summarise_profile"]

_LINE = re.compile(r":\d+\)$")
_WATCH = (
    "pull_volume", "take_batch", "store_batch", "_write_verified", "read_batch", "FatExportVolume.open",
    "verify_manifest", "write_custody",
    "post_batch", "SheetValidator.sort", "SheetValidator.reason", "open_envelope", "open_batch",
    "cross_field_problems", "decode (wire/canonical.py)",
    "encode (wire/canonical.py)", "parse_and_verify_request", "verify_envelope", "make_receipt",
    "SqliteStore._run_group", "SqliteStore.find_batch", "iter_errors",
)


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_profile(pid: int, seconds: float, out: Path, *, rate: int = 200) -> subprocess.Popen[bytes] | None:
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen(
        [exe, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", str(rate), "-f", "raw",
         "-o", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def profile_self(out: Path, *, rate: int = 500) -> Iterator[bool]:
    """Profile this process (all samples, idle ones included: fsync waits count) while the block runs."""
    exe = py_spy()
    if exe is None:
        yield False
        return
    spy = subprocess.Popen(
        [exe, "record", "-p", str(os.getpid()), "-d", "600", "-r", str(rate), "--idle", "-f", "raw",
         "-o", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let py-spy attach before the work starts
    try:
        yield True
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


def summarise_profile(raw: Path, top: int = 12, *, within: str | None = None) -> dict[str, Any]:
    """Top self and inclusive frames (percent of samples) of a py-spy ``raw`` (collapsed stacks) file.

    ``within``: count only the stacks that pass through a frame whose name contains it.
    """
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if within is not None and within not in stack:
            continue
        n = int(count)
        total += n
        lines = stack.split(";")
        frames = [_LINE.sub(")", f) for f in lines]
        own[lines[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if total == 0:
        return {"samples": 0, "self": [], "inclusive": []}

    def share(counter: Counter[str], items: list[tuple[str, int]]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in items]

    watched = [(name, n) for name, n in inclusive.most_common() if any(w in name for w in _WATCH)]
    return {
        "samples": total,
        "self": share(own, own.most_common(top)),
        "inclusive": share(inclusive, watched[:top]),
    }
