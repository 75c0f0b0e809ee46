"""The design ADR 0010 did not take, measured roughly: CPU-bound steps in a process pool fed in groups.

``python -m bench.pool_offload [--batches 400] [--group 16] [--procs N]``

One event-loop process hands the per-batch work that can leave it (envelope
decode + verify, open, schema sort: what ``gateway.web_ingest`` does between
reading the body and handing the store its job) to a ``ProcessPoolExecutor``
in groups of ``--group`` envelopes, and gets the sorted sheets back (they must
come back: the store writes them in the loop's process). Printed per batch:

* ``inline_us``: the same work done in this process, one core;
* ``loop_us``: CPU this (the loop's) process spent per batch with the pool
  (pickling envelopes out and sheets back, pipes, futures);
* ``pool_batches_per_s``: wall-clock throughput with the pool.

The gateway spends about 3.5 ms of CPU per batch over TLS (issue 19) of which
this work is only a part; what stays in the loop process (TLS, HTTP, request
signature, JSON answers, logging, the store) plus ``loop_us`` bounds the pool
design at one core's worth of that remainder. Nothing here talks HTTP.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.sheets import SheetValidator
from wire import decode_envelope, open_envelope, verify_envelope
from wire.limits import Limits

from .fleet import BenchFleet
from .workload import build_workload, read_workload

__all__ = ["main", "measure"]

_STATE: dict[str, Any] = {}


def _init(data_key: bytes, data_public: bytes) -> None:
    _STATE.update(key=data_key, pub=data_public, limits=Limits(), validator=SheetValidator())


def _work(envelopes: list[tuple[int, bytes]]) -> list[Any]:
    out = []
    for device_index, raw in envelopes:
        pub = bytes(BenchFleet.tablet_key(device_index).verify_key)
        verified = verify_envelope(decode_envelope(raw, _STATE["limits"]), pub)
        sheets = open_envelope(verified, _STATE["pub"], _STATE["key"], _STATE["limits"])
        out.append(_STATE["validator"].sort(sheets).accepted)
    return out


def measure(batches: int, group: int, procs: int) -> dict[str, Any]:
    fleet = BenchFleet(tablets=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "workload.bin"
        build_workload(path, batches=batches, devices=max(1, batches // 4))
        items = [(i.device_index, i.envelope) for i in read_workload(path)]
    _init(bytes(fleet.data), fleet.data_public)
    started = time.process_time()
    _work(items)
    inline_us = (time.process_time() - started) / len(items) * 1e6
    groups = [items[i : i + group] for i in range(0, len(items), group)]
    with concurrent.futures.ProcessPoolExecutor(procs, initializer=_init,
                                                initargs=(bytes(fleet.data), fleet.data_public)) as pool:
        list(pool.map(_work, groups[: procs * 2]))  # workers started and warm
        cpu0, wall0 = time.process_time(), time.perf_counter()
        done = sum(len(r) for r in pool.map(_work, groups))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "batches": done,
        "group": group,
        "procs": procs,
        "inline_us": inline_us,
        "loop_us": cpu / done * 1e6,
        "pool_batches_per_s": done / wall,
        "inline_batches_per_s_per_core": 1e6 / inline_us,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pool_offload", description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=400)
    p.add_argument("--group", type=int, default=16)
    p.add_argument("--procs", type=int, default=len(os.sched_getaffinity(0)))
    args = p.parse_args(argv)
    print(json.dumps(measure(args.batches, args.group, args.procs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
