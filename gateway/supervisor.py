"""``server.workers = N`` (N > 1): one supervisor process and N gateway worker processes on one listener.

The supervisor binds the listening socket(s) itself, then starts each worker as
``python -m gateway serve --config ... --worker I --listen-fd FD ...`` (a fresh
interpreter, no ``fork`` of a process with an event loop); the workers inherit
the sockets and every one of them accepts on them, so the kernel hands each new
connection to whichever worker is waiting in ``accept``. Each worker runs the
whole gateway app: its own store connection and group committer, its own
registry watcher, its own staff dashboard feed (see docs/adr/0010-all-cores.md
for what is shared and how).

* **Start**: worker 0 starts first and opens the store (it applies any schema
  migration alone); the others start once it is ready. READY=1 goes to systemd
  and the ``listening`` line to stderr when every worker has reported READY.
  A worker that exits before it is ready fails the start: the supervisor stops
  the others and exits with the worker's status (2 for a configuration error).
* **Reports**: workers speak sd_notify(3) to the supervisor's own datagram
  socket (``NOTIFY_SOCKET`` in their environment, in a 0700 directory); the
  sender is told apart by its kernel-checked pid (``SCM_CREDENTIALS``).
  ``WATCHDOG=1`` from every worker keeps the supervisor's own ping to systemd
  going; a worker silent for a whole watchdog interval is killed and replaced.
* **Failure**: a worker that dies is replaced after a backoff (0.5 s, doubling
  while replacements die within ``_STABLE_S``, at most 30 s), logged as
  ``gateway.worker.died``. The connections it held are reset; clients retry.
* **Stop**: SIGTERM/SIGINT is forwarded to every worker, which drains as a
  single process does (``server.shutdown_timeout_s``); the supervisor exits 0
  when all have exited 0.
* **Parent death**: each worker asks the kernel for SIGKILL when the supervisor
  dies (``PR_SET_PDEATHSIG``), so a killed supervisor leaves no worker holding
  the port.
* **Metrics**: workers run prometheus_client in multiprocess mode on a private
  directory, so ``/metrics`` from any worker reports the whole gateway.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from runtime.sdnotify import Notifier

from .config import GatewayConfig
from .device_slots import make_lock_file

__all__ = ["bind_listeners", "die_with_parent", "supervise"]

log = structlog.get_logger("sanaq.gateway")

_BACKLOG = 2048
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 30.0
_STABLE_S = 30.0  # a replacement that lived this long resets the backoff
_PR_SET_PDEATHSIG = 1


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Listening TCP sockets for ``host``:``port`` as asyncio's ``create_server`` would bind them."""
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def die_with_parent(parent_pid: int) -> None:
    """Worker side: SIGKILL this process when the supervisor dies (Linux ``prctl``); exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process
    started: float
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_ping: float = 0.0
    waiter: asyncio.Task[int] | None = None


@dataclass
class _Supervisor:
    config: GatewayConfig
    config_path: Path | None
    notifier: Notifier
    sockets: list[socket.socket]
    lock_fd: int
    run_dir: Path
    workers: dict[int, _Worker] = field(default_factory=dict)
    quick_deaths: dict[int, int] = field(default_factory=dict)
    exits: asyncio.Queue[_Worker | None] = field(default_factory=asyncio.Queue)
    stopping: bool = False
    failed: bool = False  # a worker exited non-zero while stopping
    notify_sock: socket.socket | None = None

    @property
    def notify_path(self) -> Path:
        return self.run_dir / "notify.sock"

    @property
    def metrics_dir(self) -> Path:
        return self.run_dir / "metrics"

    # ---- workers ---------------------------------------------------------------
    async def spawn(self, index: int) -> _Worker:
        argv = [sys.executable, "-m", "gateway", "serve"]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        argv += ["--worker", str(index), "--supervisor-pid", str(os.getpid()), "--device-lock-fd", str(self.lock_fd)]
        for sock in self.sockets:
            argv += ["--listen-fd", str(sock.fileno())]
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = str(self.notify_path)
        env.pop("WATCHDOG_PID", None)  # every worker pings (us), not only the main process
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            pass_fds=(self.lock_fd, *(s.fileno() for s in self.sockets)),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
        )
        worker = _Worker(index, proc, time.monotonic(), last_ping=time.monotonic())
        self.workers[index] = worker
        worker.waiter = asyncio.create_task(self._wait(worker), name=f"gateway-worker-{index}")
        log.info("gateway.worker.started", worker=index, pid=proc.pid)
        return worker

    async def _wait(self, worker: _Worker) -> int:
        code = await worker.proc.wait()
        await self.exits.put(worker)
        return code

    def forget(self, worker: _Worker) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        from prometheus_client import multiprocess  # noqa: PLC0415 - only the supervisor needs it

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(worker.proc.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def backoff(self, worker: _Worker) -> float:
        lived = time.monotonic() - worker.started
        quick = self.quick_deaths.get(worker.index, 0) + 1 if lived < _STABLE_S else 0
        self.quick_deaths[worker.index] = quick
        return float(min(_MAX_BACKOFF_S, _FIRST_BACKOFF_S * 2.0 ** max(0, quick - 1)))

    def signal_all(self, sig: int) -> None:
        for worker in self.workers.values():
            if worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(sig)

    # ---- reports from workers --------------------------------------------------
    def open_notify_socket(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind(str(self.notify_path))
        self.notify_sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read_reports)

    def _read_reports(self) -> None:
        assert self.notify_sock is not None
        space = socket.CMSG_SPACE(struct.calcsize("3i"))
        while True:
            try:
                data, ancillary, _, _ = self.notify_sock.recvmsg(4096, space)
            except (BlockingIOError, InterruptedError):
                return
            pid = uid = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, uid, _gid = array.array("i", payload[: struct.calcsize("3i")])
            worker = next((w for w in self.workers.values() if w.proc.pid == pid), None)
            if worker is None or uid != os.getuid():
                continue
            self._report(worker, data.decode("utf-8", "replace"))

    def _report(self, worker: _Worker, text: str) -> None:
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key == "READY" and value == "1":
                worker.ready.set()
                worker.last_ping = time.monotonic()
            elif key == "WATCHDOG" and value == "1":
                worker.last_ping = time.monotonic()
            elif key == "STATUS" and worker.ready.is_set() and not self.stopping:
                ready = sum(1 for w in self.workers.values() if w.ready.is_set())
                self.notifier.status(f"{ready}/{self.config.server.workers} workers; {value}")

    # ---- the loop ----------------------------------------------------------------
    async def start_all(self) -> int | None:
        """Start every worker; None when all are ready, else the exit status the supervisor must exit with."""
        first = await self.spawn(0)
        if (code := await self._until_ready([first])) is not None:
            return code
        rest = [await self.spawn(i) for i in range(1, self.config.server.workers)]
        return await self._until_ready(rest)

    async def _until_ready(self, workers: list[_Worker]) -> int | None:
        for worker in workers:
            assert worker.waiter is not None
            ready = asyncio.create_task(worker.ready.wait())
            await asyncio.wait({ready, worker.waiter}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if not worker.ready.is_set():
                code = worker.proc.returncode
                log.error("gateway.worker.start_failed", worker=worker.index, exit_status=code)
                return code if code in (1, 2) else 1
        return None

    async def run(self, stop: asyncio.Event) -> int:
        restarts: set[asyncio.Task[None]] = set()
        stop_wait = asyncio.create_task(stop.wait())
        watchdog = asyncio.create_task(self._watchdog())
        try:
            while self.workers or restarts:
                exited = asyncio.create_task(self.exits.get())
                waiting = {exited} if self.stopping else {exited, stop_wait}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if stop_wait in done and not self.stopping:
                    self.stopping = True
                    log.info("gateway.stopping", workers=len(self.workers))
                    self.notifier.stopping()
                    for task in restarts:
                        task.cancel()
                    restarts.clear()
                    self.signal_all(signal.SIGTERM)
                if exited not in done:
                    exited.cancel()
                    continue
                worker = exited.result()
                assert worker is not None
                self.forget(worker)
                code = worker.proc.returncode
                if self.stopping:
                    log.info("gateway.worker.stopped", worker=worker.index, exit_status=code)
                    if code not in (0, -signal.SIGTERM):  # SIGTERM before its handler: a worker still starting
                        self.failed = True
                    continue
                delay = self.backoff(worker)
                log.warning(
                    "gateway.worker.died", worker=worker.index, pid=worker.proc.pid, exit_status=code,
                    restart_in_s=delay,
                )
                task = asyncio.create_task(self._replace(worker.index, delay))
                restarts.add(task)
                task.add_done_callback(restarts.discard)
        finally:
            watchdog.cancel()
            stop_wait.cancel()
        return 1 if self.failed else 0

    async def _replace(self, index: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.stopping:
            return
        worker = await self.spawn(index)
        await self._until_ready_quietly(worker)

    async def _until_ready_quietly(self, worker: _Worker) -> None:
        assert worker.waiter is not None
        ready = asyncio.create_task(worker.ready.wait())
        await asyncio.wait({ready, worker.waiter}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if worker.ready.is_set():
            log.info("gateway.worker.ready", worker=worker.index, pid=worker.proc.pid)

    async def _watchdog(self) -> None:
        """Ping systemd; kill a ready worker that stopped pinging us for a whole interval."""
        usec = self.notifier.watchdog_usec
        if not usec or not self.notifier.address:
            return
        interval = usec / 1_000_000
        last_tick = time.monotonic()
        while True:
            self._read_reports()  # what came while this loop was busy
            now = time.monotonic()
            # no judgement while stopping (draining workers stop pinging) or after this process itself was
            # not running for an interval (frozen, starved): their pings may be waiting unread
            judge = not self.stopping and now - last_tick <= interval
            last_tick = now
            for worker in list(self.workers.values()) if judge else []:
                if worker.ready.is_set() and now - worker.last_ping > interval and worker.proc.returncode is None:
                    log.error("gateway.worker.hung", worker=worker.index, pid=worker.proc.pid, silent_s=interval)
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.send_signal(signal.SIGKILL)
            self.notifier.send("WATCHDOG=1")
            await asyncio.sleep(interval / 2)


async def supervise(config: GatewayConfig, config_path: Path | None) -> int:
    """Run ``server.workers`` gateway processes until SIGTERM; the exit status of ``sanaq-gateway serve``."""
    notifier = Notifier.from_env()
    sockets = bind_listeners(config.server.host, config.server.port)  # OSError: the caller's "cannot start"
    lock_fd = make_lock_file()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with tempfile.TemporaryDirectory(prefix="sanaq-gateway-") as run_dir:  # 0700
        sup = _Supervisor(config, config_path, notifier, sockets, lock_fd, Path(run_dir))
        sup.metrics_dir.mkdir(mode=0o700)
        sup.open_notify_socket()
        try:
            code = await _start(sup, stop)
            if code is not None:
                sup.stopping = True
                sup.signal_all(signal.SIGTERM)
                await asyncio.gather(*(w.proc.wait() for w in list(sup.workers.values())))
                return code
            bound = ", ".join(_address(s) for s in sockets)
            scheme = "http" if config.server.plain_http else "https"
            n = config.server.workers
            log.info("gateway.listening", scheme=scheme, sockets=bound, workers=n)
            notifier.ready(f"listening {scheme} on {bound}; {n} workers")
            print(f"sanaq-gateway: listening {scheme} on {bound}", file=sys.stderr, flush=True)  # as one process
            code = await sup.run(stop)
            log.info("gateway.stopped", exit_status=code)
            return code
        finally:
            if sup.notify_sock is not None:
                loop.remove_reader(sup.notify_sock.fileno())
                sup.notify_sock.close()
            for sock in sockets:
                sock.close()
            os.close(lock_fd)


async def _start(sup: _Supervisor, stop: asyncio.Event) -> int | None:
    """``start_all``, unless SIGTERM comes first (then 0: stopped before serving)."""
    starting = asyncio.create_task(sup.start_all())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if starting.done():
        return starting.result()
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    return 0


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"
