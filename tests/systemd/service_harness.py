"""The real ``sanaq-gateway`` process as systemd runs it: credentials, NOTIFY_SOCKET, filters.

``write_gateway_files`` lays out what the unit gives the service: a
``$CREDENTIALS_DIRECTORY`` with the files ``sanaq-keys export-gateway`` writes
(mode 0400, as systemd 252 leaves them) and a config made from the shipped
example ``systemd/examples/gateway.toml`` with only host, port, database and
root key filled in. ``NotifySocket`` is the manager's side of sd_notify(3):
an AF_UNIX datagram socket with SO_PASSCRED, so every message carries the
sender's pid (``NotifyAccess=main`` drops messages from any other process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from keys.files import save_data_key, save_signing_key
from keys.tls import make_ca, make_server_cert, save_cert, save_tls_key
from tests.gateway.harness import World

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
EXAMPLE_GATEWAY = SYSTEMD_DIR / "examples" / "gateway.toml"
_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class GatewayFiles:
    config: Path
    credentials: Path
    db: Path
    ca_cert: Path
    logs: Path


def write_gateway_files(world: World, base: Path) -> GatewayFiles:
    now = int(time.time() * 1000)
    creds = base / "credentials"
    creds.mkdir(mode=0o700)
    save_data_key(creds / "data.key", world.data)
    save_signing_key(creds / "gateway.key", world.receipt)
    ca_key, ca = make_ca(now_ms=now)
    tls_key, cert = make_server_cert(ca_key, ca, ["127.0.0.1"], now_ms=now)
    save_tls_key(creds / "gateway-tls.key", tls_key)
    save_cert(creds / "gateway-tls.crt", cert)
    (creds / "registry.snapshot").write_bytes(world.snapshot())
    for f in creds.iterdir():
        f.chmod(0o400)
    creds.chmod(0o500)
    save_cert(base / "ca.crt", ca)
    db = base / "state" / "census.db"
    db.parent.mkdir()
    text = EXAMPLE_GATEWAY.read_text()
    for old, new in (
        ('#database = "sqlite:///var/lib/sanaq-gateway/census.db"', f'database = "sqlite:///{db}"'),
        ('host = "0.0.0.0"', 'host = "127.0.0.1"'),
        ("#port = 8443", "port = 0"),
        ('"REPLACE-WITH-THE-64-HEX-DIGITS-OF-root.pub"', f'"{bytes(world.root.verify_key).hex()}"'),
    ):
        assert text.count(old) == 1, f"the example config changed: {old!r} not found once"
        text = text.replace(old, new)
    config = base / "etc" / "gateway.toml"
    config.parent.mkdir()
    config.write_text(text)
    logs = base / "logs"
    logs.mkdir()
    return GatewayFiles(config, creds, db, base / "ca.crt", logs)


@dataclass(frozen=True)
class Notification:
    pid: int
    fields: dict[str, str]

    def get(self, key: str) -> str | None:
        return self.fields.get(key)


class NotifySocket:
    """The receiving end of NOTIFY_SOCKET. Waiting is always bounded by a timeout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.sock.bind(str(path))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def close(self) -> None:
        self.sock.close()

    def _read(self) -> Notification:
        data, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(_CREDS.size))
        pid = -1
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _CREDS.unpack(payload[: _CREDS.size])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        return Notification(pid, fields)

    def drain(self) -> list[Notification]:
        out: list[Notification] = []
        with contextlib.suppress(BlockingIOError):
            while True:
                out.append(self._read())
        return out

    async def receive(self, within: float) -> Notification:
        """The next message; ``TimeoutError`` if none arrives ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            with contextlib.suppress(BlockingIOError):
                return self._read()
            readable = loop.create_future()
            loop.add_reader(self.sock.fileno(), lambda f=readable: f.done() or f.set_result(None))
            try:
                await asyncio.wait_for(readable, max(0.0, deadline - loop.time()))
            finally:
                loop.remove_reader(self.sock.fileno())

    async def until(self, wanted: Callable[[Notification], bool], within: float) -> list[Notification]:
        """Messages up to and including the first ``wanted`` one (all ``within`` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        seen: list[Notification] = []
        while True:
            n = await self.receive(max(0.0, deadline - loop.time()))
            seen.append(n)
            if wanted(n):
                return seen


def service_env(
    files: GatewayFiles, notify: Path | None, watchdog_usec: int | None, watchdog_pid: int | None = None
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY", "LISTEN_FDS")
    }
    env["CREDENTIALS_DIRECTORY"] = str(files.credentials)
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify)
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    if watchdog_pid is not None:
        env["WATCHDOG_PID"] = str(watchdog_pid)
    return env


@contextlib.asynccontextmanager
async def gateway_process(
    files: GatewayFiles,
    *,
    notify: Path | None = None,
    watchdog_usec: int | None = None,
    watchdog_pid: int | None = None,
    launcher: list[str] | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m gateway serve --config ...`` (optionally through ``launcher`` args), killed if still running."""
    args = [*(launcher or []), "-m", "gateway", "serve", "--config", str(files.config)]
    with (files.logs / "stdout.log").open("ab") as out, (files.logs / "stderr.log").open("ab") as err:
        env = service_env(files, notify, watchdog_usec, watchdog_pid)
        proc = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=REPO, env=env, stdout=out, stderr=err)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # SIGKILL ends a stopped process too
            await proc.wait()


async def wait_ready(
    notify: NotifySocket, proc: asyncio.subprocess.Process, files: GatewayFiles, within: float = 60
) -> list[Notification]:
    """Messages up to READY=1; fails at once, with the service's stderr, if the process exits first."""
    ready = asyncio.ensure_future(notify.until(lambda n: n.get("READY") == "1", within))
    exited = asyncio.ensure_future(proc.wait())
    try:
        await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
        if not ready.done():
            ready.cancel()
    if ready.done() and not ready.cancelled() and ready.exception() is None:
        return ready.result()
    raise AssertionError(f"no READY=1 (exit status {proc.returncode}); stderr:\n{stderr_of(files)}")


def stderr_of(files: GatewayFiles) -> str:
    return (files.logs / "stderr.log").read_text(errors="replace")[-3000:]


def listening_port(ready: Notification) -> int:
    status = ready.get("STATUS") or ""
    assert "listening https on 127.0.0.1:" in status, status
    return int(status.split("127.0.0.1:", 1)[1].split(";", 1)[0])


def wait_stopped(pid: int) -> None:
    """Block until the child ``pid`` is stopped (SIGSTOP delivered), leaving its status for others."""
    os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOWAIT)


__all__ = [
    "GatewayFiles",
    "NotifySocket",
    "Notification",
    "gateway_process",
    "listening_port",
    "service_env",
    "stderr_of",
    "wait_ready",
    "wait_stopped",
    "write_gateway_files",
]
