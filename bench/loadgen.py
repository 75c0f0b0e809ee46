"""The load generator, run in its own process: ``python -m bench.loadgen --url URL --workload FILE ...``.

It posts the workload's envelopes to ``URL/v1/batches`` over keep-alive
connections (an aiohttp connector whose limit is the concurrency; for an
``https`` URL a TLS context that trusts only ``--ca``, as a tablet's), each
request with its own RFC 9421 signature and nonce. Signatures are made before
the timed window (``--sign-live`` makes them inside it, as client cost), so
the generator's own CPU is spent on HTTP only; its CPU share in the window is
reported so a generator-bound result can be recognised.

A ``503`` with ``Retry-After`` (the gateway shedding load: every ingest slot
busy, docs/protocol.md) is what a tablet waits out and retries
(``tablet.sync_policy.RetryPolicy``: the server's ``Retry-After`` plus full
jitter, a fresh signature and nonce per attempt), and so does the generator
unless ``--no-retry``: each such answer is counted in ``shed_total``, the
request is sent again after that delay, and its latency runs from its first
attempt to its final answer. A request still waiting to retry at the end of
the run keeps its ``503`` as its final answer. ``failures_total`` counts the
final answers that are neither ``200`` nor such a ``503``.

Two modes:

* closed loop (default): ``concurrency`` workers each send the next request
  as soon as their previous one is answered: the saturation throughput. Its
  latency is queueing-dominated (Little's law: latency ~ concurrency / rate).
* open loop (``--rate R``): requests are scheduled at R per second and
  latency is measured from the scheduled time (no coordinated omission);
  ``concurrency`` connections carry them.

The result (JSON, to ``--out``) holds counts by status, throughput, latency
percentiles of the requests started after ``--warmup``, the generator's CPU
share, the (device, seq) of every 200 and a sample of answers for receipt
checks. Throughput is given two ways: ``ok_per_s_run``, all 200s over the
whole run (first send to last answer; the workers stop sending at the
deadline and wait for their answers), which a deep pipeline cannot bias, and
``ok_per_s``, answers inside the timed window, which can be off by up to
``concurrency`` answers when the server answers in bursts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from nacl.signing import SigningKey
from yarl import URL

from keys import tls
from tablet.sync_policy import RetryPolicy
from wire import httpsig

from .fleet import BenchFleet
from .workload import WorkItem, read_workload

__all__ = ["main", "percentiles"]

BATCH_TYPE = "application/vnd.sanaq.batch"
_SAMPLE = 256


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of ``values`` (seconds) in milliseconds; empty -> zeros."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1] * 1000,
            "mean": sum(ordered) / len(ordered) * 1000}


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class _Signer:
    def __init__(self, url: str) -> None:
        target = URL(url) / "v1" / "batches"
        self.target = str(target)
        self.authority = target.host if target.is_default_port() else f"{target.host}:{target.port}"
        self.path = target.raw_path
        self.scheme = target.scheme
        self._keys: dict[int, SigningKey] = {}

    def headers(self, item: WorkItem) -> dict[str, str]:
        key = self._keys.get(item.device_index)
        if key is None:
            key = self._keys[item.device_index] = BenchFleet.tablet_key(item.device_index)
        headers = httpsig.sign_request(
            method="POST",
            authority=self.authority,
            path=self.path,
            content_type=BATCH_TYPE,
            body=item.envelope,
            signing_key=key,
            created=int(time.time()),
            nonce=base64.urlsafe_b64encode(os.urandom(18)).decode("ascii"),
            scheme=self.scheme,
        )
        headers["Content-Type"] = BATCH_TYPE
        return headers


@dataclass
class _Run:
    items: list[WorkItem]
    signed: list[dict[str, str]] | None
    signer: _Signer
    cycle: bool
    retry: RetryPolicy | None = None
    deadline: float = 0.0
    shed: int = 0
    shed_final: int = 0  # requests whose final answer was a 503 + Retry-After (still retrying at the end)
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    next_index: int = 0
    exhausted_at: float | None = None
    records: list[tuple[float, float, int]] = field(default_factory=list)  # (start, end, status)
    statuses: dict[str, int] = field(default_factory=dict)
    ok_keys: list[tuple[int, int]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def take(self) -> int | None:
        n = len(self.items)
        if not self.cycle and self.next_index >= n:
            if self.exhausted_at is None:
                self.exhausted_at = time.perf_counter()
            return None
        index = self.next_index
        self.next_index += 1
        return index

    async def send(self, session: aiohttp.ClientSession, index: int, start: float) -> None:
        item = self.items[index % len(self.items)]
        headers = self.signed[index % len(self.items)] if self.signed is not None else self.signer.headers(item)
        attempts = 0
        while True:
            attempts += 1
            retry_after: str | None = None
            try:
                async with session.post(self.signer.target, data=item.envelope, headers=headers) as resp:
                    body = await resp.read()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                body, status = repr(e).encode(), 0
            if status != 503 or retry_after is None:
                break
            self.shed += 1  # load shedding: a tablet waits Retry-After (plus jitter) and sends again
            if self.retry is None or attempts >= self.retry.max_attempts:
                break
            try:
                delay = self.retry.delay(attempts, float(retry_after), self.rng)
            except ValueError:
                break
            if time.perf_counter() + delay > self.deadline:
                break
            await asyncio.sleep(delay)
            headers = self.signer.headers(item)  # a fresh signature and nonce, as a tablet's next attempt
        end = time.perf_counter()
        if status == 503 and retry_after is not None:
            self.shed_final += 1
        self.records.append((start, end, status))
        key = str(status) if status else "connection-error"
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if status == 200:
            self.ok_keys.append((item.device_index, item.seq))
            if len(self.samples) < _SAMPLE and index % 7 == 0:
                self.samples.append({"device_index": item.device_index, "seq": item.seq,
                                     "answer": body.decode("utf-8", "replace")})
        elif len(self.error_samples) < 10:
            self.error_samples.append(f"{status}: {body[:300].decode('utf-8', 'replace')}")


async def _closed_loop(run: _Run, session: aiohttp.ClientSession) -> None:
    async def worker() -> None:
        while time.perf_counter() < run.deadline:
            index = run.take()
            if index is None:
                return
            await run.send(session, index, time.perf_counter())

    async with asyncio.TaskGroup() as tg:
        for _ in range(session.connector.limit if session.connector else 1):
            tg.create_task(worker())


async def _open_loop(run: _Run, session: aiohttp.ClientSession, rate: float, started: float) -> None:
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    workers = session.connector.limit if session.connector else 1

    async def dispatcher() -> None:
        n = 0
        while True:
            due = started + n / rate
            if due >= run.deadline:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            index = run.take()
            if index is None:
                break
            queue.put_nowait((index, due))
            n += 1
        for _ in range(workers):
            queue.put_nowait(None)

    async def worker() -> None:
        while (job := await queue.get()) is not None:
            await run.send(session, job[0], job[1])

    async with asyncio.TaskGroup() as tg:
        tg.create_task(dispatcher())
        for _ in range(workers):
            tg.create_task(worker())


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    items = read_workload(args.workload)
    signer = _Signer(args.url)
    presign_started = time.perf_counter()
    signed = None if args.sign_live else [signer.headers(i) for i in items]
    presign_s = time.perf_counter() - presign_started
    run = _Run(items=items, signed=signed, signer=signer, cycle=args.cycle,
               retry=None if args.no_retry else RetryPolicy(max_retry_after_s=args.max_retry_after))
    ssl_context = tls.client_ssl_context(args.ca) if args.ca is not None else None
    connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=0, keepalive_timeout=300,
                                     enable_cleanup_closed=False, ssl=ssl_context if ssl_context else True)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        started = time.perf_counter()
        wall_started = time.time()
        run.deadline = started + args.warmup + args.duration
        cpu_before = None
        window_start = started + args.warmup

        async def mark_cpu() -> None:
            nonlocal cpu_before
            await asyncio.sleep(args.warmup)
            cpu_before = (_cpu_s(), time.perf_counter())

        marker = asyncio.create_task(mark_cpu())
        if args.rate > 0:
            await _open_loop(run, session, args.rate, started)
        else:
            await _closed_loop(run, session)
        cpu_after = (_cpu_s(), time.perf_counter())
        await marker
    window_end = min(run.deadline, run.exhausted_at or run.deadline)
    window = max(window_end - window_start, 1e-9)
    in_window = [r for r in run.records if window_start <= r[1] <= window_end]
    ok_in_window = sum(1 for r in in_window if r[2] == 200)
    latencies = [r[1] - r[0] for r in run.records if window_start <= r[0] <= window_end]
    run_s = max((r[1] for r in run.records), default=started + 1e-9) - started
    cpu_share = None
    if cpu_before is not None and cpu_after[1] > cpu_before[1]:
        cpu_share = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
    return {
        "url": args.url,
        "tls": ssl_context is not None,
        "mode": "open" if args.rate > 0 else "closed",
        "offered_rate": args.rate or None,
        "concurrency": args.concurrency,
        "requests_total": len(run.records),
        "ok_total": run.statuses.get("200", 0),
        "errors_total": len(run.records) - run.statuses.get("200", 0),
        "shed_total": run.shed,
        "retrying": run.retry is not None,
        "failures_total": len(run.records) - run.statuses.get("200", 0) - run.shed_final,
        "statuses": run.statuses,
        "warmup_s": args.warmup,
        "window_s": window,
        "window_wall": [wall_started + args.warmup, wall_started + (window_end - started)],
        "workload_exhausted": run.exhausted_at is not None and run.exhausted_at < run.deadline,
        "ok_per_s": ok_in_window / window,
        "run_s": run_s,
        "ok_per_s_run": run.statuses.get("200", 0) / run_s,
        "completed_per_s": len(in_window) / window,
        "latency_ms": percentiles(latencies),
        "generator_cpu_share": cpu_share,
        "presign_s": presign_s,
        "sign_ms_per_request": presign_s / len(items) * 1000 if signed is not None and items else None,
        "ok_keys": [] if args.cycle else run.ok_keys,
        "samples": run.samples,
        "error_samples": run.error_samples,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.loadgen", description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--workload", type=Path, required=True)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--rate", type=float, default=0.0, help="open loop at this many requests/s (0: closed loop)")
    p.add_argument("--cycle", action="store_true", help="reuse the workload from the start when it runs out")
    p.add_argument("--no-retry", action="store_true",
                   help="do not wait out a 503 + Retry-After and send again (a tablet does)")
    p.add_argument("--max-retry-after", type=float, default=RetryPolicy().max_retry_after_s,
                   help="longest Retry-After honoured, in seconds (the tablet's cap by default)")
    p.add_argument("--sign-live", action="store_true", help="sign inside the timed window")
    p.add_argument("--request-timeout", type=float, default=120.0)
    p.add_argument("--ca", type=Path, default=None,
                   help="census CA certificate for an https URL: trusted alone, host names checked (as a tablet)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    result = asyncio.run(_main(args))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
