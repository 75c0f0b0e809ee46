"""The real ``sanaq-gateway serve`` process for the fault tests: start, SIGKILL, restart, inject I/O faults.

A ``GatewayBed`` holds one configuration (keys, bootstrap snapshot, TOML) in a
temp directory and starts the gateway as a child process on 127.0.0.1 with
port 0; the URL is read from the process's own ``listening`` line. The
process's stdout (its JSON log) is copied line by line to a file in the same
directory, so a test can look for ``request.failed`` (a 500) after the fact;
``GatewayProcess.on_log`` listeners see each line as it comes, which lets a
test kill the process right after it logged ``batch.stored`` (committed, not
yet answered).

With ``fiu=True`` the process runs under ``fiu-run -x`` (Debian
``fiu-utils``): libfiu's POSIX preload is in place, every failure point is
off, and ``GatewayProcess.fiu`` switches points on and off through
``fiu-ctrl`` while the process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from keys.files import save_data_key, save_signing_key
from tests.gateway.harness import World

__all__ = ["FIU_RUN", "BlockingGateway", "GatewayBed", "GatewayProcess", "StartRefused", "free_port", "stored_batches"]

FIU_RUN = shutil.which("fiu-run")
FIU_CTRL = shutil.which("fiu-ctrl")
START_TIMEOUT_S = 60


class StartRefused(Exception):
    """The process exited before it listened: ``returncode`` and the ``stderr`` it printed."""

    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(f"gateway exited {returncode}: {stderr}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass
class GatewayProcess:
    proc: asyncio.subprocess.Process
    url: str
    fiu_prefix: Path | None
    log_path: Path | None = None
    stderr_tail: list[str] = field(default_factory=list)
    on_log: list[Callable[[bytes], None]] = field(default_factory=list)
    _drains: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def kill(self) -> int:
        """SIGKILL and reap; returns the exit status, -9.

        asyncio's child watcher reports 255 when it finds the child already
        reaped (``Unknown child process pid``), which happens now and then right
        after a SIGKILL; the gateway itself never exits with 255 (its codes are
        0, 1 and 2), so 255 after our SIGKILL is reported as -9.
        """
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        await self._stop_drain()
        return -signal.SIGKILL if code == 255 else code

    async def terminate(self) -> int:
        """SIGTERM (graceful stop: in-flight requests finish and commit) and reap."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 60)
        await self._stop_drain()
        return code

    async def _stop_drain(self) -> None:
        for task in self._drains:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
        self._drains.clear()

    async def _copy_log(self, stream: asyncio.StreamReader) -> None:
        assert self.log_path is not None
        with self.log_path.open("ab") as sink:
            while line := await stream.readline():
                sink.write(line)
                for listener in self.on_log:
                    listener(line)

    async def fiu(self, command: str) -> None:
        """One libfiu remote-control command (``enable name=...``, ``disable name=...``) via ``fiu-ctrl``.

        ``fiu-ctrl`` exits 0 even when it cannot reach the process; it says so on
        stderr, so any word there fails the test.
        """
        assert self.fiu_prefix is not None and FIU_CTRL is not None, "process not started under fiu-run"
        proc = await asyncio.create_subprocess_exec(
            FIU_CTRL,
            "-f",
            str(self.fiu_prefix),
            "-c",
            command,
            str(self.pid),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0 and not err.strip(), (command, out, err)


@dataclass
class BlockingGateway:
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            if self.proc.stderr is not None:
                self.proc.stderr.close()


@dataclass
class GatewayBed:
    """One gateway configuration in ``root``; ``start()`` may be called again after a kill."""

    world: World
    root: Path
    database: str = ""
    limits_toml: str = ""
    server_toml: str = ""
    extra_toml: str = ""
    port: int = 0
    workers: int = 1  # server.workers: the fault tests kill and fault-inject one process (test_gateway_workers: 2)
    starts: int = 0
    processes: list[GatewayProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.database:
            self.database = f"sqlite:///{self.db_path}"
        save_data_key(self.root / "data.key", self.world.data)
        save_signing_key(self.root / "gateway.key", self.world.receipt)
        (self.root / "registry.snapshot").write_bytes(self.world.snapshot())
        self.write_config()

    @property
    def db_path(self) -> Path:
        return self.root / "state" / "census.db"

    @property
    def config_path(self) -> Path:
        return self.root / "gateway.toml"

    @property
    def log_path(self) -> Path:
        return self.root / "gateway.log"

    def write_config(self) -> None:
        parts = [
            f'database = "{self.database}"',
            "[server]",
            f'host = "127.0.0.1"\nport = {self.port}\nplain_http = true\nshutdown_timeout_s = 20',
            f"workers = {self.workers}",
            self.server_toml,
            "[keys]",
            f'root_public_key = "{bytes(self.world.root.verify_key).hex()}"',
            'data_key = "data.key"\nreceipt_key = "gateway.key"\nbootstrap_snapshot = "registry.snapshot"',
        ]
        if self.limits_toml:
            parts += ["[limits]", self.limits_toml]
        parts.append(self.extra_toml)
        self.config_path.write_text("\n".join(p for p in parts if p) + "\n")

    async def start(self, *, fiu: bool = False, on_log: Callable[[bytes], None] | None = None) -> GatewayProcess:
        """Start ``python -m gateway serve``; return once it listens, else raise ``StartRefused``.

        ``on_log`` sees every log line from the first on (listeners added later miss the start-up lines).
        """
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(self.config_path)]
        prefix = None
        if fiu:
            assert FIU_RUN is not None, "fiu-run not found: apt-get install fiu-utils"
            prefix = self.root / f"fiu-{self.starts}"
            argv = [FIU_RUN, "-x", "-f", str(prefix), *argv]
        self.starts += 1
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
        )
        assert proc.stderr is not None and proc.stdout is not None
        gp = GatewayProcess(proc, "", prefix, self.log_path)
        if on_log is not None:
            gp.on_log.append(on_log)
        self.processes.append(gp)
        gp._drains.append(asyncio.create_task(gp._copy_log(proc.stdout), name=f"gateway-log-{proc.pid}"))
        seen: list[str] = []
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                raw = await proc.stderr.readline()
                if not raw:
                    code = await proc.wait()
                    await gp._stop_drain()
                    raise StartRefused(code, "".join(seen))
                line = raw.decode(errors="replace")
                seen.append(line)
                if "listening" in line:
                    url = "http://" + line.rsplit(" on ", 1)[1].strip()
                    break
        gp.url = url
        gp.stderr_tail.extend(seen)
        gp._drains.append(asyncio.create_task(_drain(proc.stderr, gp.stderr_tail), name=f"gateway-err-{proc.pid}"))
        return gp

    def start_blocking(self) -> BlockingGateway:
        """For synchronous tests (hypothesis, schemathesis): the same process, started with ``subprocess``."""
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(self.config_path)]
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert proc.stderr is not None
        seen = []
        for raw in proc.stderr:  # blocks until the process prints or exits; the line comes within a second
            line = raw.decode(errors="replace")
            seen.append(line)
            if "listening" in line:
                return BlockingGateway(proc, "http://" + line.rsplit(" on ", 1)[1].strip())
        raise StartRefused(proc.wait(timeout=START_TIMEOUT_S), "".join(seen))

    async def kill_all(self) -> None:
        """Teardown: SIGKILL whatever this bed started that is still running (a failed test's leftovers)."""
        for gp in self.processes:
            if gp.proc.returncode is None:
                await gp.kill()

    def failed_requests_logged(self) -> int:
        """How many ``request.failed`` events (unexpected 500s) the processes logged."""
        if not self.log_path.exists():
            return 0
        return sum(1 for line in self.log_path.read_text(errors="replace").splitlines() if "request.failed" in line)


async def _drain(stream: asyncio.StreamReader, sink: list[str]) -> None:
    while line := await stream.readline():
        sink.append(line.decode(errors="replace"))
        del sink[:-200]


def free_port() -> int:
    """A port nobody listens on now, for a gateway that must come back on the same address."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stored_batches(db: Path) -> dict[tuple[str, int], tuple[bytes, bytes, int]]:
    """(device, seq) -> (batch_hash, receipt, sheets stored) read straight from the SQLite file."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT b.device_id, b.seq, b.batch_hash, b.receipt,"
            " (SELECT count(*) FROM sheets s WHERE s.batch_id = b.id)"
            " + (SELECT count(*) FROM quarantine q WHERE q.batch_id = b.id)"
            " FROM batches b"
        ).fetchall()
    return {(d, s): (bytes(h), bytes(r), n) for d, s, h, r, n in rows}
