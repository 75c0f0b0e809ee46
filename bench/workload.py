"""Pre-built batch envelopes for the load generator: realistic household sheets, sealed and signed.

A workload file is a flat sequence of records ``device_index u32 | seq u32 |
length u32 | envelope``, ordered seq-major over the devices (seq 1 of every
device, then seq 2, ...), so consecutive requests come from different tablets
and the gateway's per-device in-flight limit never throttles the bench.
Building runs on every core (``multiprocessing``); it is set-up, not timed.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from tablet.generator import KindMix, generate_sheets
from wire import seal_batch

from .fleet import BenchFleet, bench_key, device_name

__all__ = ["WorkItem", "build_workload", "read_workload"]

_REC = struct.Struct(">III")
_MAGIC = b"SNQBENCH1\n"
HOUSEHOLDS = KindMix.only(household=1)


@dataclass(frozen=True, slots=True)
class WorkItem:
    device_index: int
    seq: int
    envelope: bytes


def _seal_range(args: tuple[int, int, int, int, int, int]) -> bytes:
    """Envelopes for positions ``lo .. hi-1`` of the seq-major order; returns their records."""
    lo, hi, devices, seq_offset, sheets_per_batch, sealed_at_ms = args
    fleet = BenchFleet(tablets=0)
    data_public = fleet.data_public
    keys: dict[int, SigningKey] = {}
    out = bytearray()
    for pos in range(lo, hi):
        dev, seq = pos % devices, seq_offset + pos // devices + 1
        key = keys.get(dev)
        if key is None:
            key = keys[dev] = BenchFleet.tablet_key(dev)
        name = device_name(dev)
        sheets = generate_sheets(1, sheets_per_batch, device_id=name, start=(seq - 1) * sheets_per_batch,
                                 mix=HOUSEHOLDS)
        envelope = seal_batch(
            device_id=name,
            seq=seq,
            sheets=sheets,
            sealed_at_ms=sealed_at_ms,
            device_key=key,
            data_public_key=data_public,
            ephemeral_secret=hashlib.sha256(bench_key("ephemeral", pos) + name.encode()).digest(),
        )
        out += _REC.pack(dev, seq, len(envelope)) + envelope
    return bytes(out)


def build_workload(
    path: Path, *, batches: int, devices: int, seq_offset: int = 0, sheets_per_batch: int = 10, procs: int = 0
) -> dict[str, float]:
    """Write ``batches`` envelopes to ``path``; returns build facts (seconds, mean envelope bytes)."""
    started = time.perf_counter()
    procs = procs or multiprocessing.cpu_count()
    chunk = max(1, min(500, batches // (procs * 4) or 1))
    now = time.time_ns() // 1_000_000
    jobs = [(lo, min(lo + chunk, batches), devices, seq_offset, sheets_per_batch, now)
            for lo in range(0, batches, chunk)]
    total = 0
    with path.open("wb") as f:
        f.write(_MAGIC)
        if procs == 1:
            parts: Iterator[bytes] = map(_seal_range, jobs)
            for part in parts:
                f.write(part)
                total += len(part)
        else:
            with multiprocessing.get_context("spawn").Pool(procs) as pool:
                for part in pool.imap(_seal_range, jobs):
                    f.write(part)
                    total += len(part)
    envelope_bytes = total - batches * _REC.size
    return {
        "batches": batches,
        "sheets": batches * sheets_per_batch,
        "build_s": time.perf_counter() - started,
        "mean_envelope_bytes": envelope_bytes / batches if batches else 0.0,
        "total_bytes": envelope_bytes,
    }


def read_workload(path: Path) -> list[WorkItem]:
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        raise ValueError(f"{path} is not a bench workload file")
    items = []
    pos = len(_MAGIC)
    view = memoryview(data)
    while pos < len(data):
        dev, seq, n = _REC.unpack_from(data, pos)
        pos += _REC.size
        items.append(WorkItem(dev, seq, bytes(view[pos : pos + n])))
        pos += n
    return items
