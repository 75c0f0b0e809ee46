"""The real gateway process speaking sd_notify(3) to a socket the test owns, as systemd would see it.

The gateway runs with the credentials layout and the shipped example config
(``service_harness``), HTTPS on 127.0.0.1, ``WATCHDOG_USEC=400000`` (a ping
every 0.2 s). Every message must come from the main pid (``NotifyAccess=main``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from keys.tls import client_ssl_context
from tests.gateway.harness import World, until

from .service_harness import (
    GatewayFiles,
    NotifySocket,
    gateway_process,
    listening_port,
    wait_ready,
    wait_stopped,
    write_gateway_files,
)

WATCHDOG_USEC = 400_000
PING_S = WATCHDOG_USEC / 1_000_000 / 2
START_TIMEOUT_S = 60


@pytest.fixture
def files(world: World, tmp_path: Path) -> GatewayFiles:
    return write_gateway_files(world, tmp_path)


@pytest.fixture
def notify(tmp_path: Path):
    ns = NotifySocket(tmp_path / "notify.sock")
    yield ns
    ns.close()


async def healthz(files: GatewayFiles, port: int) -> int:
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(files.ca_cert))
    async with aiohttp.ClientSession(connector=connector) as s, s.get(f"https://127.0.0.1:{port}/healthz") as r:
        return r.status


async def test_ready_status_watchdog_and_stopping_come_from_the_main_pid(
    files: GatewayFiles, notify: NotifySocket
) -> None:
    async with gateway_process(files, notify=notify.path, watchdog_usec=WATCHDOG_USEC) as proc:
        seen = await wait_ready(notify, proc, files, START_TIMEOUT_S)
        ready = seen[-1]
        assert [n.pid for n in seen] == [proc.pid] * len(seen)
        assert not any(n.get("WATCHDOG") for n in seen[:-1]), "watchdog pings before READY=1"
        port = listening_port(ready)  # STATUS= is sent with READY=1
        assert await healthz(files, port) == 200, "READY=1 was sent before the listener answers"

        pings = 0
        while pings < 3:
            n = await notify.receive(within=PING_S * 10)
            assert n.pid == proc.pid
            pings += n.get("WATCHDOG") == "1"

        proc.send_signal(signal.SIGTERM)
        rest = await notify.until(lambda n: n.get("STOPPING") == "1", 30)
        assert {n.pid for n in rest} == {proc.pid}
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_watchdog_pings_stop_while_the_process_is_frozen_and_resume(
    files: GatewayFiles, notify: NotifySocket
) -> None:
    async with gateway_process(files, notify=notify.path, watchdog_usec=WATCHDOG_USEC) as proc:
        await wait_ready(notify, proc, files, START_TIMEOUT_S)
        await notify.until(lambda n: n.get("WATCHDOG") == "1", PING_S * 10)

        proc.send_signal(signal.SIGSTOP)
        await asyncio.get_running_loop().run_in_executor(None, wait_stopped, proc.pid)
        notify.drain()  # sent before the stop took effect
        with pytest.raises(TimeoutError):
            await notify.receive(within=PING_S * 5)  # systemd would time the watchdog out here

        proc.send_signal(signal.SIGCONT)
        n = (await notify.until(lambda n: n.get("WATCHDOG") == "1", PING_S * 10))[-1]
        assert n.pid == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_no_pings_when_the_watchdog_is_meant_for_another_pid(files: GatewayFiles, notify: NotifySocket) -> None:
    """WATCHDOG_PID names the process systemd watches; a child that inherited the variables stays quiet."""
    async with gateway_process(files, notify=notify.path, watchdog_usec=WATCHDOG_USEC, watchdog_pid=1) as proc:
        await wait_ready(notify, proc, files, START_TIMEOUT_S)
        with pytest.raises(TimeoutError):
            await notify.until(lambda n: n.get("WATCHDOG") == "1", PING_S * 5)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_bad_config_exits_2_without_ready(files: GatewayFiles, notify: NotifySocket) -> None:
    """Exit status 2 is what RestartPreventExitStatus=2 in the units relies on."""
    text = files.config.read_text()
    files.config.write_text(text.replace("#log_level", "log_levle"))
    async with gateway_process(files, notify=notify.path, watchdog_usec=WATCHDOG_USEC) as proc:
        assert await asyncio.wait_for(proc.wait(), 60) == 2
    assert notify.drain() == []


def _log_events(files: GatewayFiles, event: str) -> list[dict[str, object]]:
    found = []
    for line in (files.logs / "stdout.log").read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
    return found


async def test_with_workers_a_frozen_worker_is_killed_and_replaced_and_the_pings_go_on(
    files: GatewayFiles, notify: NotifySocket
) -> None:
    """``workers = 2``: READY=1 and the pings come from the supervisor (the main pid); a worker that stops
    pinging the supervisor for a whole watchdog interval is killed and replaced, the service stays up."""
    text = files.config.read_text()
    files.config.write_text(text.replace("[server]\n", "[server]\nworkers = 2\n", 1))
    async with gateway_process(files, notify=notify.path, watchdog_usec=WATCHDOG_USEC) as proc:
        seen = await wait_ready(notify, proc, files, START_TIMEOUT_S)
        assert {n.pid for n in seen} == {proc.pid}
        assert "; 2 workers" in (seen[-1].get("STATUS") or "")
        frozen = {e["worker"]: e["pid"] for e in _log_events(files, "gateway.worker.started")}[1]
        assert isinstance(frozen, int)
        os.kill(frozen, signal.SIGSTOP)

        def logged(event: str, key: str, value: object) -> bool:
            notify.drain()  # the manager reads every message, as systemd does (a datagram queue holds 10)
            return any(e.get(key) == value for e in _log_events(files, event))

        await until(lambda: logged("gateway.worker.hung", "pid", frozen), timeout_s=10, what="frozen worker found")
        await until(lambda: logged("gateway.worker.ready", "worker", 1), timeout_s=30, what="worker 1 replaced")
        notify.drain()
        n = (await notify.until(lambda n: n.get("WATCHDOG") == "1", PING_S * 10))[-1]
        assert n.pid == proc.pid
        port = listening_port(seen[-1])
        assert await healthz(files, port) == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_with_workers_a_frozen_supervisor_does_not_stall_the_workers(
    files: GatewayFiles, notify: NotifySocket
) -> None:
    """The workers' pings fill the frozen supervisor's queue (10 datagrams) within a second; they drop the
    rest instead of waiting, so requests are still answered; the supervisor judges no one after it thaws."""
    text = files.config.read_text()
    files.config.write_text(text.replace("[server]\n", "[server]\nworkers = 2\n", 1))
    async with gateway_process(files, notify=notify.path, watchdog_usec=WATCHDOG_USEC) as proc:
        seen = await wait_ready(notify, proc, files, START_TIMEOUT_S)
        port = listening_port(seen[-1])
        proc.send_signal(signal.SIGSTOP)
        await asyncio.get_running_loop().run_in_executor(None, wait_stopped, proc.pid)
        try:
            loop = asyncio.get_running_loop()
            until_full = loop.time() + PING_S * 15  # by then the pings have filled the queue many times over
            answered = 0
            while loop.time() < until_full or answered < 4:
                assert await asyncio.wait_for(healthz(files, port), 10) == 200
                answered += 1
        finally:
            proc.send_signal(signal.SIGCONT)
        notify.drain()
        n = (await notify.until(lambda n: n.get("WATCHDOG") == "1", PING_S * 10))[-1]
        assert n.pid == proc.pid
        assert _log_events(files, "gateway.worker.hung") == []
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
