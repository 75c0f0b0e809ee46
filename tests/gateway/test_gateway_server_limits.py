"""Each runner-level and body limit of the configuration is the one the server enforces.

The gateway is built by the production factory (``gateway.server.build_server``)
through the harness, and every case sets a limit away from its default and
sends a request that the default would take: the refusal can only come from
the configured value. The control cases send the same request under the
default configuration and see it stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.config import LimitsConfig, ServerConfig
from gateway.context import CTX

from .harness import Gateway, World, now_ms, post_batch, sign, start_gateway, until

BATCH = "application/vnd.sanaq.batch"
RAW_TIMEOUT_S = 15  # guards the test from hanging; every answer below comes within a few seconds


@dataclass(frozen=True)
class Exchange:
    status: int | None  # None: the server closed the connection without an answer
    code: str | None
    headers: dict[str, str]
    elapsed_s: float


def _parse(raw: bytes, elapsed_s: float) -> Exchange:
    if not raw:
        return Exchange(None, None, {}, elapsed_s)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    code = body.split(b'"code": "', 1)[1].split(b'"', 1)[0].decode() if b'"code": "' in body else None
    return Exchange(int(lines[0].split(" ", 2)[1]), code, headers, elapsed_s)


async def _open(gw: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = gw.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _exchange(gw: Gateway, head: bytes, body: bytes = b"", *, then_wait: bool = True) -> Exchange:
    """Send ``head`` + ``body`` on a fresh connection, read until the server closes or answers."""
    reader, writer = await _open(gw)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(RAW_TIMEOUT_S):
            raw = await reader.read(65536) if then_wait else b""
        return _parse(raw, loop.time() - started)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _batch_head(gw: Gateway, headers: dict[str, str], content_length: int) -> bytes:
    authority = gw.url.removeprefix("http://")
    lines = [
        "POST /v1/batches HTTP/1.1",
        f"Host: {authority}",
        *(f"{k}: {v}" for k, v in headers.items()),
        f"Content-Length: {content_length}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _stored(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM batches").fetchone()[0])


def _signed_batch(world: World, gw: Gateway, sheets: Any, extra: dict[str, str] | None = None) -> tuple[bytes, bytes]:
    envelope = world.batch("TAB-0001", 1, sheets(1))
    url = f"{gw.url}/v1/batches"
    headers = {**sign("POST", url, world.tablets["TAB-0001"], envelope, BATCH), **(extra or {})}
    return _batch_head(gw, headers, len(envelope)), envelope


# (limits, bytes of one extra header field, expected status)
HEADER_CASES = [
    pytest.param(LimitsConfig(max_header_bytes=1000), 4000, 400, id="max_header_bytes=1000 refuses a 4000-byte header"),
    pytest.param(LimitsConfig(max_header_bytes=1000), 900, 200, id="max_header_bytes=1000 takes a 900-byte header"),
    pytest.param(LimitsConfig(), 4000, 200, id="the default 8190 takes a 4000-byte header"),
    pytest.param(LimitsConfig(max_header_bytes=20000), 12000, 200, id="max_header_bytes=20000 takes 12000 bytes"),
    pytest.param(LimitsConfig(), 12000, 400, id="the default 8190 refuses a 12000-byte header"),
]


@pytest.mark.parametrize(("limits", "pad", "status"), HEADER_CASES)
async def test_max_header_bytes_is_the_configured_value(
    limits: LimitsConfig, pad: int, status: int, world: World, tmp_path: Path, sheets
) -> None:
    gw = await start_gateway(world, tmp_path / "c.db", limits=limits)
    try:
        head, envelope = _signed_batch(world, gw, sheets, {"X-Pad": "p" * pad})
        answer = await _exchange(gw, head, envelope)
        stored = _stored(gw.db_path)
    finally:
        await gw.stop()
    assert answer.status == status, answer
    assert stored == (1 if status == 200 else 0)


BODY_CASES = [
    pytest.param(LimitsConfig(max_body_bytes=4096), 8192, 413, id="max_body_bytes=4096 refuses 8192 bytes"),
    pytest.param(LimitsConfig(), 8192, 400, id="the default takes 8192 bytes to the envelope parser"),
]


@pytest.mark.parametrize(("limits", "size", "status"), BODY_CASES)
async def test_max_body_bytes_is_the_configured_value(
    limits: LimitsConfig, size: int, status: int, world: World, tmp_path: Path
) -> None:
    """A body of ``size`` zero bytes: over the configured cap it is 413; else the envelope parser refuses it."""
    gw = await start_gateway(world, tmp_path / "c.db", limits=limits)
    try:
        body = b"\0" * size
        url = f"{gw.url}/v1/batches"
        answer = await _exchange(
            gw, _batch_head(gw, sign("POST", url, world.tablets["TAB-0001"], body, BATCH), size), body
        )
    finally:
        await gw.stop()
    assert answer.status == status, answer


@pytest.mark.parametrize(
    ("idle_timeout_s", "closed"),
    [pytest.param(1.0, True, id="idle_timeout_s=1 closes an unfinished head"), pytest.param(75.0, False, id="default")],
)
async def test_idle_timeout_is_the_configured_value(
    idle_timeout_s: float, closed: bool, world: World, tmp_path: Path
) -> None:
    """An unfinished request head: closed after the configured idle timeout, still open at the default."""
    server = ServerConfig(plain_http=True, port=0, idle_timeout_s=idle_timeout_s)
    gw = await start_gateway(world, tmp_path / "c.db", server=server)
    reader, writer = await _open(gw)
    try:
        writer.write(b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        await writer.drain()
        try:
            async with asyncio.timeout(4):  # the 1 s timeout closes well within; the default (75 s) does not
                tail = await reader.read()
        except TimeoutError:
            tail = None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        await gw.stop()
    if closed:
        assert tail is not None and (tail == b"" or tail.startswith(b"HTTP/1.1 408")), tail
    else:
        assert tail is None


async def _slow_body(gw: Gateway, world: World, sheets: Any, sent: int) -> Exchange:
    """A signed batch head, then ``sent`` bytes of its body, then nothing (the connection stays open)."""
    head, envelope = _signed_batch(world, gw, sheets)
    return await _exchange(gw, head, envelope[:sent])


async def test_a_body_too_slow_is_408_and_holds_no_slot(world: World, tmp_path: Path, sheets) -> None:
    """``body_timeout_s``/``body_rate_grace_s``: the body stalls and is refused; the only slot stays free."""
    limits = LimitsConfig(max_concurrent_ingest=1, body_timeout_s=30, body_rate_grace_s=1.0, body_min_rate_bytes_s=1024)
    gw = await start_gateway(world, tmp_path / "c.db", limits=limits)
    try:
        with capture_logs() as logs:
            stalled = asyncio.create_task(_slow_body(gw, world, sheets, 10))

            def refused_while_the_slot_is_free() -> bool:
                assert not gw.app[CTX].ingest_slots.locked()
                return any(e["event"] == "request.body.too_slow" for e in logs)

            await until(refused_while_the_slot_is_free, timeout_s=RAW_TIMEOUT_S, what="request.body.too_slow logged")
            answer = await stalled
    finally:
        await gw.stop()
    assert (answer.status, answer.code) == (408, "request-timeout"), answer
    assert 1.0 <= answer.elapsed_s < 1.0 + 5, answer  # the grace period (+ the 2 s lingering at most)
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]


async def test_whole_body_deadline_refuses_a_body_that_keeps_the_minimum_rate(world: World, tmp_path: Path) -> None:
    """2 KiB/s beats the minimum rate (1 KiB/s) but 40 KiB does not arrive within ``body_timeout_s``=2."""
    limits = LimitsConfig(body_timeout_s=2.0, body_rate_grace_s=0.5, body_min_rate_bytes_s=1024)
    gw = await start_gateway(world, tmp_path / "c.db", limits=limits)
    reader, writer = await _open(gw)
    try:
        url = f"{gw.url}/v1/batches"
        body = b"\0" * 40_960
        writer.write(_batch_head(gw, sign("POST", url, world.tablets["TAB-0001"], body, BATCH), len(body)))
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = b""
        async with asyncio.timeout(RAW_TIMEOUT_S):
            for offset in range(0, len(body), 512):  # 512 bytes every 0.25 s: 2 KiB/s
                writer.write(body[offset : offset + 512])
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        answer = await reader.read(65536)
                if answer:
                    break
        elapsed = loop.time() - started
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        await gw.stop()
    parsed = _parse(answer, elapsed)
    assert (parsed.status, parsed.code) == (408, "request-timeout"), parsed
    assert 2.0 <= elapsed < 3.5


async def test_ingest_slots_full_is_503_with_retry_after_not_a_queue(world: World, tmp_path: Path, sheets) -> None:
    limits = LimitsConfig(max_concurrent_ingest=1, retry_after_s=7)
    gw = await start_gateway(world, tmp_path / "c.db", limits=limits)
    slots = gw.app[CTX].ingest_slots
    try:
        await slots.acquire()  # one batch being opened and committed holds the only slot
        head, envelope = _signed_batch(world, gw, sheets)
        busy = await _exchange(gw, head, envelope)
        slots.release()
        head, envelope = _signed_batch(world, gw, sheets)
        free = await _exchange(gw, head, envelope)
    finally:
        await gw.stop()
    assert (busy.status, busy.code, busy.headers.get("Retry-After")) == (503, "unavailable", "7"), busy
    assert busy.elapsed_s < 2, "a full house must be answered at once, not queued"
    assert free.status == 200


async def test_buffered_body_budget_is_the_configured_value(world: World, tmp_path: Path, sheets) -> None:
    """``max_buffered_body_bytes``: bodies being received share one budget; past it the next body gets 503."""
    limits = LimitsConfig(max_body_bytes=64 * 1024, max_buffered_body_bytes=64 * 1024, body_rate_grace_s=20)
    gw = await start_gateway(world, tmp_path / "c.db", limits=limits)
    _, writer = await _open(gw)
    try:
        url = f"{gw.url}/v1/batches"
        hog = b"\0" * (64 * 1024)
        writer.write(_batch_head(gw, sign("POST", url, world.tablets["TAB-0002"], hog, BATCH), len(hog)) + hog[:-1024])
        await writer.drain()
        budget = gw.app[CTX].body_buffer
        await until(lambda: budget.held >= 60 * 1024, timeout_s=RAW_TIMEOUT_S, what="the hog's 63 KiB received")
        head, envelope = _signed_batch(world, gw, sheets)
        refused = await _exchange(gw, head, envelope)
        writer.close()  # the hog hangs up: its bytes go back to the budget
        await until(lambda: budget.held == 0, timeout_s=RAW_TIMEOUT_S, what="the hog's bytes given back")
        head, envelope = _signed_batch(world, gw, sheets)
        taken = await _exchange(gw, head, envelope)
    finally:
        writer.close()
        await gw.stop()
    assert (refused.status, refused.code) == (503, "unavailable"), refused
    assert refused.headers.get("Retry-After") == "5"
    assert taken.status == 200, taken


async def test_a_client_hanging_up_mid_body_is_no_failure(world: World, tmp_path: Path, sheets) -> None:
    gw = await start_gateway(world, tmp_path / "c.db")
    try:
        with capture_logs() as logs:
            head, envelope = _signed_batch(world, gw, sheets)
            _, writer = await _open(gw)
            writer.write(head + envelope[:20])
            await writer.drain()
            writer.close()
            await until(
                lambda: any(e["event"] == "request.body.abandoned" for e in logs),
                timeout_s=RAW_TIMEOUT_S,
                what="request.body.abandoned logged",
            )
    finally:
        await gw.stop()
    assert not [e for e in logs if e["event"] == "request.failed" or e["log_level"] in ("error", "critical")], logs
    assert gw.app[CTX].body_buffer.held == 0


async def test_shutdown_timeout_is_the_configured_value(world: World, tmp_path: Path, sheets) -> None:
    """``server.shutdown_timeout_s``=1: a request still in flight (a body still arriving) delays the stop by
    about one second, not by the library's default (60 s) nor by the body's own deadline (20 s here)."""
    server = ServerConfig(plain_http=True, port=0, shutdown_timeout_s=1.0)
    limits = LimitsConfig(body_rate_grace_s=20, body_timeout_s=60)
    gw = await start_gateway(world, tmp_path / "c.db", server=server, limits=limits)
    head, envelope = _signed_batch(world, gw, sheets)
    _, writer = await _open(gw)
    try:
        writer.write(head + envelope[:10])
        await writer.drain()
        budget = gw.app[CTX].body_buffer
        await until(lambda: budget.held == 10, timeout_s=RAW_TIMEOUT_S, what="the first body bytes received")
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(RAW_TIMEOUT_S):
            await gw.stop()
        took = loop.time() - started
    finally:
        writer.close()
    assert 0.9 <= took < 5, took


# (max_sheets_per_batch, sheets in the batch, status, code): the configured cap, not the default 1000
SHEET_CASES = [
    pytest.param(LimitsConfig(max_sheets_per_batch=3), 4, 413, "oversize", id="4 sheets over a cap of 3"),
    pytest.param(LimitsConfig(max_sheets_per_batch=3), 3, 200, None, id="3 sheets at a cap of 3"),
    pytest.param(LimitsConfig(), 4, 200, None, id="4 sheets at the default cap"),
]


@pytest.mark.parametrize(("limits", "count", "status", "code"), SHEET_CASES)
async def test_max_sheets_per_batch_is_the_configured_value(
    limits: LimitsConfig, count: int, status: int, code: str | None, world: World, tmp_path: Path, session, sheets
) -> None:
    gw = await start_gateway(world, tmp_path / "c.db", limits=limits)
    try:
        envelope = world.batch("TAB-0001", 1, sheets(count))
        got, answer = await post_batch(session, gw, envelope, world.tablets["TAB-0001"])
    finally:
        await gw.stop()
    assert (got, answer.get("code")) == (status, code), answer
    with sqlite3.connect(gw.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM sheets").fetchone()[0] == (count if status == 200 else 0)


# (request_window_s, age of the signature's `created`, status): the configured window, not the default 300 s
WINDOW_CASES = [
    pytest.param(LimitsConfig(request_window_s=30), 60, 401, id="60 s old under a 30 s window"),
    pytest.param(LimitsConfig(request_window_s=30), 10, 200, id="10 s old under a 30 s window"),
    pytest.param(LimitsConfig(), 60, 200, id="60 s old under the default 300 s window"),
]


@pytest.mark.parametrize(("limits", "age_s", "status"), WINDOW_CASES)
async def test_request_window_is_the_configured_value(
    limits: LimitsConfig, age_s: int, status: int, world: World, tmp_path: Path, session, sheets
) -> None:
    gw = await start_gateway(world, tmp_path / "c.db", limits=limits)
    try:
        envelope = world.batch("TAB-0001", 1, sheets(1))
        got, answer = await post_batch(session, gw, envelope, world.tablets["TAB-0001"],
                                       created=now_ms() // 1000 - age_s)
    finally:
        await gw.stop()
    assert got == status, answer
    if status == 401:
        assert answer["code"] == "clock-skew"


def test_every_gateway_outside_the_package_is_built_by_the_production_factory() -> None:
    """Tests, benchmarks and tools start the gateway through ``build_server`` (its runner limits included)."""
    import ast

    repo = Path(__file__).resolve().parents[2]
    builders = []
    for folder in ("tests", "bench", "scripts"):
        for path in (repo / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module in ("gateway", "gateway.app") and any(
                    a.name == "create_app" for a in node.names
                ):
                    builders.append(str(path.relative_to(repo)))
    assert builders == []
