"""``runtime.sdnotify.Notifier`` against a real AF_UNIX datagram socket, in process."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from runtime.sdnotify import Notifier

from .service_harness import NotifySocket

OWN = "own"  # placeholder for this process's pid in the table

ENV_CASES = [
    # (environment, expected address, expected watchdog_usec)
    ({}, None, None),
    ({"NOTIFY_SOCKET": ""}, None, None),
    ({"NOTIFY_SOCKET": "/run/systemd/notify"}, "/run/systemd/notify", None),
    ({"NOTIFY_SOCKET": "@abstract"}, "@abstract", None),
    ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "400000"}, "/n", 400000),
    ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "400000", "WATCHDOG_PID": OWN}, "/n", 400000),
    ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}, "/n", None),
    ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "0"}, "/n", None),
    ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "-400000"}, "/n", None),
    ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30s"}, "/n", None),
    ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": ""}, "/n", None),
]


@pytest.mark.parametrize(("env", "address", "usec"), ENV_CASES)
def test_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], address: str | None, usec: int | None) -> None:
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, str(os.getpid()) if value == OWN else value)
    n = Notifier.from_env()
    assert (n.address, n.watchdog_usec) == (address, usec)
    assert n.watchdog_interval_s == (None if usec is None else usec / 2_000_000)


@pytest.fixture
def listener(tmp_path: Path):
    ns = NotifySocket(tmp_path / "notify.sock")
    yield ns
    ns.close()


async def test_messages_reach_a_path_socket(listener: NotifySocket) -> None:
    n = Notifier(str(listener.path), None)
    n.ready("listening")
    n.status("batches=3")
    n.stopping()
    got = [await listener.receive(5) for _ in range(3)]
    assert [m.fields for m in got] == [
        {"READY": "1", "STATUS": "listening"},
        {"STATUS": "batches=3"},
        {"STOPPING": "1"},
    ]
    assert {m.pid for m in got} == {os.getpid()}


async def test_messages_reach_an_abstract_socket() -> None:
    name = f"sanaq-test-{os.getpid()}-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
        sock.settimeout(5)
        Notifier("@" + name, None).status("hello")
        assert sock.recv(100) == b"STATUS=hello"
    finally:
        sock.close()


@pytest.mark.parametrize("address", [None, "/nonexistent/notify.sock", "@sanaq-nobody-listens"])
def test_sending_without_a_listener_is_silent(address: str | None) -> None:
    Notifier(address, 400000).ready("x")


async def test_watchdog_loop_pings_at_half_the_interval(listener: NotifySocket) -> None:
    n = Notifier(str(listener.path), 100_000)  # a ping every 50 ms
    task = asyncio.create_task(n.watchdog_loop())
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(4):
            assert (await listener.receive(2)).fields == {"WATCHDOG": "1"}
        assert loop.time() - start >= 0.15 * 0.9  # three sleeps of 50 ms between four pings
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(("address", "usec"), [(None, 100_000), ("sock", None)])
async def test_watchdog_loop_ends_at_once_without_a_watchdog(
    listener: NotifySocket, address: str | None, usec: int | None
) -> None:
    n = Notifier(str(listener.path) if address else None, usec)
    await asyncio.wait_for(n.watchdog_loop(), 1)
    assert listener.drain() == []
