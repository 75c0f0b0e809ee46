"""CPU per batch of the real ingest path, in-process: ``python -m bench.profile_ingest [options]``.

Two measurements over the same pre-signed envelopes (batches of household
sheets from ``bench.workload``):

* ``steps``: each step of ``POST /v1/batches`` timed alone on one thread, as
  the handler calls it (request signature verify, envelope decode + verify,
  the sealed box alone, ``open_batch``, ``SheetValidator.sort``, receipt
  signing, the two structlog events of a stored batch);
* ``server``: the real gateway app (``gateway.server.build_server``, the
  SQLite store, structlog configured as ``serve`` does, writing to a file) in
  this process over TLS with a throwaway census CA, as deployed, driven by
  ``bench.loadgen`` in its own process until the workload is used up. The
  result is this process's CPU time (every thread: event loop, TLS, store
  commits) per stored batch, and that of the event-loop thread alone; ``--profile`` adds the top functions of the
  event-loop thread by cumulative and by own time (cProfile, which slows the
  run: the CPU figure of a profiled run is marked as such).

``--loop uvloop`` runs the server on uvloop instead of asyncio's loop (uvloop
is not a dependency: ``pip install uvloop`` first).
Nothing is written under ``bench/results`` unless ``--out`` says so.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import importlib
import io
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from gateway.__main__ import make_store
from gateway.config import load_config
from gateway.server import build_server
from gateway.sheets import SheetValidator
from keys import files as keyfiles
from keys import tls
from runtime.logs import configure_logging
from wire import decode_envelope, httpsig, key_id, make_receipt, open_batch, sealing, verify_envelope
from wire.limits import Limits

from .fleet import REPO, BenchFleet, TlsFiles
from .loadgen import BATCH_TYPE
from .workload import WorkItem, build_workload, read_workload

__all__ = ["main", "measure_server", "measure_steps"]


def _per_call_us(fn: Callable[[int], object], n: int, min_s: float, rounds: int = 3) -> float:
    """Microseconds per call of ``fn(i)`` over i in 0..n-1: the best of ``rounds`` rounds of ``min_s`` each."""
    best = float("inf")
    for _ in range(rounds):
        calls = 0
        started = time.process_time()
        while True:
            for i in range(n):
                fn(i)
            calls += n
            elapsed = time.process_time() - started
            if elapsed >= min_s:
                break
        best = min(best, elapsed / calls)
    return best * 1e6


def measure_steps(items: list[WorkItem], *, min_s: float = 0.5) -> dict[str, float]:
    """Microseconds of CPU per batch for each step of the ingest handler, on one thread."""
    fleet = BenchFleet(tablets=0)
    limits = Limits()
    data_secret = bytes(fleet.data)
    pubs = {i.device_index: bytes(BenchFleet.tablet_key(i.device_index).verify_key) for i in items}
    by_kid = {key_id(p): p for p in pubs.values()}
    authority, path, now = "127.0.0.1:8443", "/v1/batches", int(time.time())
    signed = []
    for item in items:
        headers = httpsig.sign_request(
            method="POST", authority=authority, path=path, content_type=BATCH_TYPE, body=item.envelope,
            signing_key=BenchFleet.tablet_key(item.device_index), created=now,
            nonce=hashlib.sha256(item.envelope).hexdigest()[:32], scheme="https",
        )
        headers["Content-Type"] = BATCH_TYPE
        signed.append(headers)
    verified = [verify_envelope(decode_envelope(i.envelope, limits), pubs[i.device_index]) for i in items]
    opened = [open_batch(v, fleet.data_public, data_secret, limits) for v in verified]
    validator = SheetValidator()
    log = structlog.get_logger("sanaq.gateway")
    n = len(items)

    def stored_events(i: int) -> None:
        h = verified[i].header
        structlog.contextvars.bind_contextvars(device_id=h.device_id, seq=h.seq)
        structlog.contextvars.bind_contextvars(batch_hash=verified[i].envelope.batch_hash.hex())
        log.info("batch.stored", device_id=h.device_id, seq=h.seq, batch_hash=verified[i].envelope.batch_hash.hex(),
                 road="online", sheets=10, quarantined=0, skew_ms=12)
        structlog.contextvars.clear_contextvars()

    def receipt(i: int) -> object:
        h = verified[i].header
        return make_receipt(batch_hash=verified[i].envelope.batch_hash, device_id=h.device_id, seq=h.seq,
                            received_at_ms=1, road="online", sheets_accepted=10, sheets_quarantined=0,
                            gateway_key=fleet.receipt)

    steps: dict[str, Callable[[int], object]] = {
        "request_verify": lambda i: httpsig.parse_and_verify_request(
            method="POST", authority=authority, path=path, query="", headers=signed[i], body=items[i].envelope,
            lookup_key=by_kid.__getitem__, now_s=now, scheme="https"),
        "envelope_verify": lambda i: verify_envelope(decode_envelope(items[i].envelope, limits),
                                                     pubs[items[i].device_index]),
        "sealed_box_only": lambda i: sealing.open_sealed(verified[i].envelope.ciphertext, fleet.data_public,
                                                         data_secret),
        "open": lambda i: open_batch(verified[i], fleet.data_public, data_secret, limits),
        "sort": lambda i: validator.sort(opened[i].sheets, opened[i].sheet_bytes),
        "receipt_sign": receipt,
        "log_events": stored_events,
    }
    with tempfile.TemporaryFile("w") as sink:
        configure_logging("info", stream=sink, cache=False)
        try:
            return {name: _per_call_us(fn, n, min_s) for name, fn in steps.items()}
        finally:
            structlog.reset_defaults()


async def _serve_and_load(config_path: Path, workload: Path, ca: Path | None, concurrency: int,
                          profiler: cProfile.Profile | None) -> dict[str, Any]:
    config = load_config(config_path)
    server = build_server(
        config,
        make_store(config),
        data_key=keyfiles.load_data_key(config.keys.data_key, None),
        receipt_key=keyfiles.load_signing_key(config.keys.receipt_key, None),
        root_public_key=bytes.fromhex(config.keys.root_public_key),
        bootstrap_snapshot=config.keys.bootstrap_snapshot.read_bytes() if config.keys.bootstrap_snapshot else None,
    )
    ssl_context = None
    if not config.server.plain_http:
        assert config.server.tls_cert is not None
        assert config.server.tls_key is not None
        ssl_context = tls.server_ssl_context(config.server.tls_cert, config.server.tls_key)
    await server.start(ssl_context=ssl_context)
    try:
        host, port = server.addresses[0]
        scheme = "http" if ssl_context is None else "https"
        out = config_path.parent / "loadgen.json"
        argv = [sys.executable, "-m", "bench.loadgen", "--url", f"{scheme}://{host}:{port}", "--workload",
                str(workload), "--concurrency", str(concurrency), "--duration", "600", "--warmup", "0",
                "--out", str(out)]
        if ca is not None:
            argv += ["--ca", str(ca)]
        cpu_before, loop_before, wall_before = time.process_time(), time.thread_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        generator = await asyncio.create_subprocess_exec(*argv, cwd=REPO)
        code = await generator.wait()
        if profiler is not None:
            profiler.disable()
        cpu_s, wall_s = time.process_time() - cpu_before, time.perf_counter() - wall_before
        loop_s = time.thread_time() - loop_before
        if code != 0:
            raise RuntimeError(f"bench.loadgen exited with {code}")
        result: dict[str, Any] = json.loads(out.read_text())
    finally:
        await server.stop()
    ok = int(result["ok_total"])
    return {
        "tls": ssl_context is not None,
        "concurrency": concurrency,
        "ok": ok,
        "errors": int(result["errors_total"]),
        "wall_s": wall_s,
        "server_cpu_s": cpu_s,
        "server_cpu_us_per_batch": cpu_s / max(ok, 1) * 1e6,
        "loop_thread_cpu_us_per_batch": loop_s / max(ok, 1) * 1e6,
        "server_cores": cpu_s / wall_s,
        "ok_per_s": ok / wall_s,
    }


def measure_server(work: Path, workload: Path, *, plain: bool = False, concurrency: int = 64,
                   loop: str = "asyncio", profile: bool = False) -> tuple[dict[str, Any], pstats.Stats | None]:
    """Run the real app in this process under ``bench.loadgen`` until the workload is used up."""
    fleet = BenchFleet(tablets=max(i.device_index for i in read_workload(workload)) + 1)
    tls_files = None if plain else TlsFiles.make(work / "tls")
    config = fleet.write_gateway_config(work / "gw", work / "census.db", tls_files)
    profiler = cProfile.Profile() if profile else None
    log_file = (work / "gateway.log").open("w")
    configure_logging("info", stream=log_file, cache=False)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":  # not a dependency: installed by hand to measure it (ADR 0011)
        loop_factory = importlib.import_module("uvloop").new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            result = runner.run(_serve_and_load(config, workload, None if tls_files is None else tls_files.ca,
                                                concurrency, profiler))
    finally:
        structlog.reset_defaults()
        log_file.close()
    result["loop"] = loop
    result["profiled"] = profile
    stats = pstats.Stats(profiler, stream=io.StringIO()) if profiler is not None else None
    return result, stats


def top_functions(stats: pstats.Stats, top: int, sort: str) -> list[tuple[str, int, float, float]]:
    """``(function, calls, own s, cumulative s)`` of the ``top`` functions by ``sort`` ("cumulative"/"tottime")."""
    rows = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (file, line, name), (_cc, calls, own, cum, _callers) in raw.items():
        short = file.replace(str(REPO) + "/", "")
        if "site-packages/" in short:
            short = short.split("site-packages/", 1)[1]
        elif "/lib/python3" in short:
            short = short.split("/lib/python3", 1)[1].split("/", 1)[-1]
        rows.append((f"{name} ({short}:{line})", calls, own, cum))
    index = 3 if sort == "cumulative" else 2
    return sorted(rows, key=lambda r: r[index], reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.profile_ingest", description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=3000, help="batches posted to the server (each once)")
    p.add_argument("--devices", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--plain", action="store_true", help="plain HTTP instead of TLS")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--profile", action="store_true", help="cProfile the event-loop thread (slower run)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-steps", action="store_true", help="skip the per-step timings")
    p.add_argument("--no-server", action="store_true", help="skip the in-process server run")
    p.add_argument("--min-s", type=float, default=0.5, help="CPU seconds per step and round")
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    report: dict[str, Any] = {"batches": args.batches}
    with tempfile.TemporaryDirectory(prefix="sanaq-profile-") as tmp:
        work = Path(tmp)
        workload = work / "workload.bin"
        build_workload(workload, batches=args.batches, devices=args.devices)
        if not args.no_steps:
            steps = measure_steps(read_workload(workload)[:200], min_s=args.min_s)
            report["steps_us_per_batch"] = steps
            print("step (one thread, us of CPU per batch of 10 household sheets)")
            for name, us in steps.items():
                print(f"  {name:<18} {us:8.1f}")
        if not args.no_server:
            server, stats = measure_server(work, workload, plain=args.plain, concurrency=args.concurrency,
                                           loop=args.loop, profile=args.profile)
            report["server"] = server
            print(f"server ({'plain' if args.plain else 'TLS'}, {args.concurrency} connections, {args.loop}"
                  f"{', profiled' if args.profile else ''}): {server['ok']} batches stored, {server['errors']} "
                  f"errors, {server['server_cpu_us_per_batch']:.0f} us CPU per batch (event-loop thread "
                  f"{server['loop_thread_cpu_us_per_batch']:.0f}), "
                  f"{server['server_cores']:.2f} cores, {server['ok_per_s']:.0f} batches/s")
            if stats is not None:
                for sort in ("cumulative", "tottime"):
                    rows = top_functions(stats, args.top, sort)
                    report[f"top_{sort}"] = rows
                    print(f"top {args.top} by {sort} (event-loop thread; calls, own us/batch, cumulative us/batch)")
                    for name, calls, own, cum in rows:
                        ok = max(server["ok"], 1)
                        print(f"  {own / ok * 1e6:8.1f} {cum / ok * 1e6:8.1f} {calls:9d}  {name}")
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
