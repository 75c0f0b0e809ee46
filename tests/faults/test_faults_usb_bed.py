"""Shared bed of the USB-daemon fault tests (``test_faults_usb_*``); it holds no test itself.

The daemon under test is always the real ``sanaq-usb-ingest pull`` process
(optionally under ``fiu-run -x``); the gateway is the real aiohttp app on
127.0.0.1 (``tests/usb_ingest/images.serve_gateway``), reached through a
``HoldProxy`` when a test must act at an exact point of an HTTP exchange
(before the request reaches the gateway, or after the gateway answered but
before the daemon sees the answer).

What every test checks after its faults (``Audit``):

* no crash: exit 0, 1 or 2; no ``Traceback``; no ``internal`` error; at most
  one non-JSON line on stderr, and exit 2 comes with exactly one
  ``sanaq-usb-ingest: error: ...`` line;
* the spool: every file with a final name is whole (its SHA-256 is its name),
  decodes, verifies under the tablet key and is byte-for-byte the envelope the
  tablet wrote; ``.tmp-*`` leftovers are allowed (they never look complete);
* nothing acknowledged that was not written: every batch the gateway stored
  has a line in ``receipts.jsonl`` or is still pending in the spool;
* convergence: after a clean run every batch of the volume is stored exactly
  once (same bytes), nothing is pending, and each receipt line covers the
  stored batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.usb_ingest.images import Env, Gateway
from wire import decode_envelope, verify_envelope
from wire.errors import WireError

__all__ = [
    "COMMAND",
    "FIU_CTRL",
    "FIU_RUN",
    "Audit",
    "HoldProxy",
    "UsbRun",
    "fiu_ctrl",
    "receipt_lines",
    "run_usb",
    "ballast",
    "free_bytes",
    "sigkill",
    "small_tmpfs",
    "spawn_usb",
    "torn_receipt_lines",
    "write_config",
]

_EXE = Path(sys.executable).parent / "sanaq-usb-ingest"
COMMAND = [str(_EXE)] if _EXE.exists() else [sys.executable, "-m", "usb_ingest"]
FIU_RUN = shutil.which("fiu-run")
FIU_CTRL = shutil.which("fiu-ctrl")
DEVICE = "TAB-0001"


def write_config(env: Env, path: Path, gateway_url: str, *, concurrency: int = 2, min_free: int = 0,
                 log_level: str = "info") -> Path:
    """The daemon's TOML: fast back-off, short timeouts, ``spool_min_free_bytes`` = ``min_free``."""
    path.write_text(
        f'station_bundle = "{env.station_bundle}"\n'
        f'gateway_url = "{gateway_url}"\n'
        f'state_dir = "{env.state_dir}"\n'
        f"spool_min_free_bytes = {min_free}\n"
        f'log_level = "{log_level}"\n'
        'language = "en"\n'  # the technician's messages are read in English here
        "[forward]\ninitial_backoff_s = 0.02\nmax_backoff_s = 0.2\nrequest_timeout_s = 5.0\n"
        f"concurrency = {concurrency}\n",
        encoding="utf-8",
    )
    return path


# ---- the daemon process -------------------------------------------------------------------------


_CRASH_EVENTS = {"usb.cli.internal_error", "usb.pull.crashed", "usb.device.event_failed"}


@dataclass
class UsbRun:
    """One finished process; ``service``: the ``run`` command, which logs on stdout (``pull`` on stderr)."""

    code: int
    stdout: str
    stderr: str
    service: bool = False

    @property
    def events(self) -> list[dict[str, object]]:
        logs = self.stdout if self.service else self.stderr
        return [json.loads(line) for line in logs.splitlines() if line.startswith("{")]

    def count(self, event: str) -> int:
        return sum(1 for e in self.events if e.get("event") == event)

    @property
    def plain_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip() and not line.startswith("{")]

    @property
    def report(self) -> dict[str, object] | None:
        """The ``--json`` pull report (absent when the pull ended with an error)."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else None

    @property
    def crashed(self) -> bool:
        """Anything but a controlled end: see the module docstring."""
        plain = self.plain_lines
        internal = any(e.get("event") in _CRASH_EVENTS for e in self.events)
        return (
            self.code not in (0, 1, 2)
            or "Traceback" in self.stderr
            or internal
            or any("error: internal" in line for line in plain)
            or len(plain) > 1
            or (self.code == 2 and not (len(plain) == 1 and plain[0].startswith("sanaq-usb-ingest: error: ")))
        )


def _argv(args: list[str], fiu: list[str] | None, fiu_prefix: Path | None) -> list[str]:
    if fiu is None:
        return [*COMMAND, *args]
    assert FIU_RUN is not None and fiu_prefix is not None
    commands = [x for c in fiu for x in ("-c", c)]
    return [FIU_RUN, "-x", "-f", str(fiu_prefix), *commands, *COMMAND, *args]


async def spawn_usb(*args: str, fiu: list[str] | None = None,
                    fiu_prefix: Path | None = None) -> asyncio.subprocess.Process:
    """Start the daemon command (stdout and stderr piped); ``fiu``: libfiu commands enabled from the start."""
    return await asyncio.create_subprocess_exec(
        *_argv(list(args), fiu, fiu_prefix), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )


async def run_usb(*args: str, fiu: list[str] | None = None, fiu_prefix: Path | None = None,
                  timeout_s: float = 60) -> UsbRun:
    proc = await spawn_usb(*args, fiu=fiu, fiu_prefix=fiu_prefix)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return UsbRun(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


async def run_service(config: Path, done: Callable[[dict[str, object]], bool], *, fiu: list[str] | None = None,
                      fiu_prefix: Path | None = None, timeout_s: float = 20) -> UsbRun:
    """``sanaq-usb-ingest run``: SIGTERM as soon as ``done()`` holds (checked after each log line); the
    graceful stop must then exit 0. ``done`` gets the line's JSON event ({} for another line). A timeout
    leaves the process SIGKILLed and the code -9."""
    proc = await spawn_usb("run", "--config", str(config), fiu=fiu, fiu_prefix=fiu_prefix)
    assert proc.stdout is not None and proc.stderr is not None
    err_task = asyncio.create_task(proc.stderr.read())
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(timeout_s):
            while line := await proc.stdout.readline():
                lines.append(line)
                if done(json.loads(line) if line.startswith(b"{") else {}):
                    proc.send_signal(signal.SIGTERM)
                    break
            lines.append(await proc.stdout.read())
            await proc.wait()
    except TimeoutError:
        sigkill(proc)
        await proc.wait()
    err = await err_task
    assert proc.returncode is not None
    return UsbRun(proc.returncode, b"".join(lines).decode(errors="replace"), err.decode(errors="replace"), True)


async def fiu_ctrl(prefix: Path, pid: int, command: str) -> None:
    """One libfiu remote-control command into a process started under ``fiu-run -f prefix``; it is in force
    when this returns (fiu-ctrl waits for the process's answer). Any word on fiu-ctrl's stderr fails."""
    assert FIU_CTRL is not None
    proc = await asyncio.create_subprocess_exec(
        FIU_CTRL, "-f", str(prefix), "-c", command, str(pid),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0 and not err.strip(), (command, out, err)


# ---- what the station and the gateway hold ------------------------------------------------------


def _receipt_rows(state_dir: Path) -> list[dict[str, object] | None]:
    path = state_dir / "receipts.jsonl"
    if not path.exists():
        return []
    rows: list[dict[str, object] | None] = []
    for raw in path.read_bytes().splitlines():
        try:
            rows.append(json.loads(raw))
        except ValueError:
            rows.append(None)
    return rows


def receipt_lines(state_dir: Path) -> list[tuple[str, int, str]]:
    """(device id, seq, batch hash hex) per readable line of ``receipts.jsonl``."""
    return [(str(r["device_id"]), int(str(r["seq"])), str(r["batch_hash"]))
            for r in _receipt_rows(state_dir) if r is not None]


def torn_receipt_lines(state_dir: Path) -> int:
    """Lines of ``receipts.jsonl`` that are not one JSON object (a cut or glued line)."""
    return sum(1 for r in _receipt_rows(state_dir) if r is None)


@dataclass
class Audit:
    """The invariants of the module docstring for one tablet's volume (``envelopes``: seq -> bytes).

    Nothing here asserts: problems are counted in ``bad`` (and described in
    ``notes``) so a test can record them in its fault ledger before asserting.
    """

    env: Env
    gw: Gateway | None
    envelopes: dict[int, bytes]
    device_id: str = DEVICE
    bad: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def spool_dir(self) -> Path:
        return self.env.state_dir / "spool" / "batches"

    def _flaw(self, p: Path) -> str | None:
        device_id, seq, digest, suffix = p.name.rsplit(".", 3)
        data = p.read_bytes()
        if (device_id, suffix) != (self.device_id, "sqb") or hashlib.sha256(data).hexdigest() != digest:
            return f"{p.name} is not whole"
        try:
            verify_envelope(decode_envelope(data), bytes(self.env.tablet_key(self.device_id).verify_key))
        except WireError as e:
            return f"{p.name} does not verify ({e.code})"
        if data != self.envelopes.get(int(seq)):
            return f"{p.name} holds other bytes than the tablet wrote"
        return None

    def spool(self) -> dict[int, str]:
        """Pending seq -> hash of the whole, verified files; any other complete-looking file counts in ``bad``."""
        pending: dict[int, str] = {}
        if not self.spool_dir.exists():
            return pending
        for p in sorted(self.spool_dir.iterdir()):
            if p.name.startswith(".tmp-"):
                continue
            try:
                flaw = self._flaw(p)
            except FileNotFoundError:  # delivered by a running daemon while we looked
                continue
            if flaw is None:
                pending[int(p.name.rsplit(".", 3)[1])] = p.name.rsplit(".", 3)[2]
            elif flaw not in self.notes:
                self.bad += 1
                self.notes.append(flaw)
        return pending

    def pending_custody(self) -> int:
        d = self.env.state_dir / "spool" / "custody"
        return sum(1 for p in d.iterdir() if not p.name.startswith(".tmp-")) if d.exists() else 0

    def stored(self) -> list[tuple[int, bytes, bytes]]:
        """(seq, batch hash, envelope) of every batch row the gateway holds for the device."""
        assert self.gw is not None
        rows = self.gw.rows("SELECT seq, batch_hash, envelope FROM batches WHERE device_id = ? ORDER BY seq",
                            self.device_id)
        return [(int(s), bytes(h), bytes(e)) for s, h, e in rows]

    def lost(self) -> int:
        """Batches the gateway stored that the station holds neither a receipt line for nor in its spool."""
        pending = self.spool()
        receipted = {(s, h) for d, s, h in receipt_lines(self.env.state_dir) if d == self.device_id}
        lost = 0
        for seq, digest, _ in self.stored():
            if (seq, digest.hex()) not in receipted and pending.get(seq) != digest.hex():
                lost += 1
                self.notes.append(f"seq {seq} stored at the gateway, neither receipted nor pending")
        return lost

    def outcome(self) -> tuple[int, int]:
        """(lost, doubled) once a clean run is over: every batch must be stored once with the tablet's bytes,
        receipted (each receipt line naming the stored batch) and gone from the spool."""
        stored = self.stored()
        per_seq = Counter(s for s, _, _ in stored)
        doubled = sum(n - 1 for n in per_seq.values())
        receipted = {(s, h) for d, s, h in receipt_lines(self.env.state_dir) if d == self.device_id}
        lost = 0
        for seq, envelope in self.envelopes.items():
            digest = hashlib.sha256(envelope).digest()
            if (seq, digest, envelope) not in stored or (seq, digest.hex()) not in receipted:
                lost += 1
                self.notes.append(f"seq {seq} not stored with its bytes, or not receipted")
        leftover = self.spool()
        if leftover:
            self.notes.append(f"still pending after the clean run: {sorted(leftover)}")
        return lost + len(leftover), doubled

    def receipt_line_counts(self) -> Counter[int]:
        return Counter(s for d, s, _ in receipt_lines(self.env.state_dir) if d == self.device_id)


# ---- a TCP proxy that can hold or drop one exchange -----------------------------------------------


Hook = Callable[[int], Awaitable[bool]]


class HoldProxy:
    """Plain TCP relay daemon -> gateway that knows when a ``POST /v1/batches`` goes out and its answer comes.

    ``on_request(n)`` runs when the n-th batch POST (1-based, over all
    connections) arrives from the daemon, before a byte of it is relayed;
    ``on_answer(n)`` when the gateway's answer to it arrives, before a byte of
    it is relayed. A hook returning False drops the connection instead of
    relaying (the test has usually SIGKILLed the daemon by then). Requests are
    recognised by their first bytes (aiohttp does not pipeline).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.on_request: Hook | None = None
        self.on_answer: Hook | None = None
        self.posts = 0
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> HoldProxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        waiting: list[int] = []  # batch POSTs of this connection whose answer has not come yet
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pipe_requests(reader, up_writer, waiting))
                tg.create_task(self._pipe_answers(up_reader, writer, waiting))
        except* (ConnectionError, _Dropped):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
            self._tasks.discard(task)

    async def _pipe_requests(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, waiting: list[int]) -> None:
        while chunk := await src.read(65536):
            if chunk.startswith(b"POST /v1/batches "):
                self.posts += 1
                n = self.posts
                if self.on_request is not None and not await self.on_request(n):
                    raise _Dropped
                waiting.append(n)
            dst.write(chunk)
            await dst.drain()
        raise _Dropped

    async def _pipe_answers(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, waiting: list[int]) -> None:
        while chunk := await src.read(65536):
            if waiting and chunk.startswith(b"HTTP/1.1 "):
                n = waiting.pop(0)
                if self.on_answer is not None and not await self.on_answer(n):
                    raise _Dropped
            dst.write(chunk)
            await dst.drain()
        raise _Dropped


class _Dropped(Exception):
    """One side closed, or a hook dropped the exchange: close both."""


def sigkill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)


# ---- a small real file system -------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """``mount -t tmpfs -o options`` at ``where`` (root needed: fails, never skips), unmounted at the end."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"{options},mode=0700", "tmpfs", str(where)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (root needed): {done.stderr.strip()}", pytrace=False)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def ballast(path: Path, leave_bytes: int) -> None:
    """Fill the file system of ``path`` with one file until ``leave_bytes`` stay free."""
    with path.open("wb") as f:
        f.write(b"\0" * max(0, free_bytes(path.parent) - leave_bytes))
        f.flush()
        os.fsync(f.fileno())
