"""The benchmark fleet: deterministic identities, a registry snapshot, a real gateway process.

Keys come from fixed labels (``bench_key("tablet", i)``), so the load
generator process re-derives a tablet's signing key from its index and no
private key crosses a process boundary in a file. The gateway runs as the
real ``python -m gateway serve --config FILE`` on 127.0.0.1, over TLS with a
throwaway census CA (``TlsFiles``) as deployed or over plain HTTP, with its
default store settings (SQLite WAL, synchronous=FULL, group commit).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from keys import tls
from keys.files import save_data_key, save_signing_key
from wire import TabletEntry, key_id, make_snapshot

__all__ = [
    "REPO",
    "BenchFleet",
    "ProcessProbe",
    "Server",
    "TlsFiles",
    "bench_key",
    "device_name",
    "start_gateway",
    "start_server",
]

DAY_MS = 86_400_000
REPO = Path(__file__).resolve().parent.parent
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def bench_key(role: str, index: int = 0) -> bytes:
    """32 deterministic seed bytes for a bench identity (never a real key)."""
    return hashlib.sha256(f"sanaq-bench/{role}/{index}".encode()).digest()


def device_name(index: int) -> str:
    return f"BT-{index:05d}"


@dataclass(frozen=True)
class BenchFleet:
    """Root, data and receipt keys and ``tablets`` enrolled tablets, all derived from fixed labels."""

    tablets: int = 2000
    root: SigningKey = field(default_factory=lambda: SigningKey(bench_key("root")))
    data: PrivateKey = field(default_factory=lambda: PrivateKey(bench_key("data")))
    receipt: SigningKey = field(default_factory=lambda: SigningKey(bench_key("receipt")))

    @staticmethod
    def tablet_key(index: int) -> SigningKey:
        return SigningKey(bench_key("tablet", index))

    @property
    def data_public(self) -> bytes:
        return bytes(self.data.public_key)

    @property
    def receipt_keys(self) -> dict[bytes, bytes]:
        pub = bytes(self.receipt.verify_key)
        return {key_id(pub): pub}

    def snapshot(self) -> bytes:
        now = time.time_ns() // 1_000_000
        entries = []
        for i in range(self.tablets):
            pub = bytes(self.tablet_key(i).verify_key)
            entries.append(
                TabletEntry(
                    device_id=device_name(i),
                    key_id=key_id(pub),
                    public_key=pub,
                    usb_serial=f"SER{i:07d}",
                    institution="AB-000001",
                    worker_id=f"W{i:05d}",
                    status="issued",
                    issued_at_ms=now - DAY_MS,
                    returned_at_ms=None,
                )
            )
        return make_snapshot(
            version=1,
            issued_at_ms=now,
            expires_at_ms=now + DAY_MS,
            data_public_key=self.data_public,
            gateway_public_keys=[bytes(self.receipt.verify_key)],
            tablets=entries,
            stations=[],
            root_key=self.root,
        )

    def write_gateway_config(
        self, directory: Path, db_path: Path, tls_files: TlsFiles | None = None, *, workers: int = 1
    ) -> Path:
        """Key files, bootstrap snapshot and ``gateway.toml`` (port 0) in ``directory``.

        Plain HTTP, or with ``tls_files`` HTTPS with that certificate, as deployed. ``workers``:
        ``server.workers`` (1: one process, the bench's baseline; the gateway's default is the CPUs).
        """
        directory.mkdir(parents=True, exist_ok=True)
        if not (directory / "data.key").exists():
            save_data_key(directory / "data.key", self.data)
            save_signing_key(directory / "gateway.key", self.receipt)
            (directory / "registry.snapshot").write_bytes(self.snapshot())
        transport = (
            "plain_http = true\n" if tls_files is None
            else f'plain_http = false\ntls_cert = "{tls_files.cert}"\ntls_key = "{tls_files.key}"\n'
        )
        config = directory / "gateway.toml"
        config.write_text(
            f'database = "sqlite:///{db_path}"\n'
            f'[server]\nhost = "127.0.0.1"\nport = 0\n{transport}shutdown_timeout_s = 30\nworkers = {workers}\n'
            f'[keys]\nroot_public_key = "{bytes(self.root.verify_key).hex()}"\n'
            'data_key = "data.key"\nreceipt_key = "gateway.key"\nbootstrap_snapshot = "registry.snapshot"\n'
        )
        return config


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway census CA and a gateway certificate for 127.0.0.1, made by ``keys.tls`` as the ceremony does."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> TlsFiles:
        directory.mkdir(parents=True, exist_ok=True)
        now = time.time_ns() // 1_000_000
        ca_key, ca_cert = tls.make_ca(now_ms=now)
        key, cert = tls.make_server_cert(ca_key, ca_cert, now_ms=now)
        files = cls(directory / "census-ca.crt", directory / "gateway-tls.crt", directory / "gateway-tls.key")
        tls.save_cert(files.ca, ca_cert)
        tls.save_cert(files.cert, cert)
        tls.save_tls_key(files.key, key)
        return files


class ProcessProbe:
    """Samples a process's CPU time and RSS, and the machine's busy CPU time, from /proc every ``period_s``.

    The machine's share minus the server's and the load generator's is what other programs used during a
    run: this machine is shared, and that number says how much a result was disturbed.
    """

    def __init__(self, pid: int, period_s: float = 0.25) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float, int, float]] = []  # (wall time, cpu s, rss kB, machine busy s)
        self.children_peak_kb = 0
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{pid}", daemon=True)
        self._thread.start()

    def _read(self) -> tuple[float, float, int, float] | None:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            status = Path(f"/proc/{self.pid}/status").read_text()
            machine = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        # utime + stime, and cutime + cstime: the CPU of children already reaped (a replaced gateway worker)
        cpu = sum(int(f) for f in fields[11:15]) / _CLK_TCK + self._children_cpu()
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        ticks = [int(x) for x in machine]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / _CLK_TCK  # all but idle and iowait
        return time.time(), cpu, rss, busy

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            sample = self._read()
            if sample is not None:
                self.samples.append(sample)

    def _children_cpu(self) -> float:
        """CPU seconds of the live child processes (a gateway supervisor's workers; 0 for one process).

        Also notes each child's VmHWM, so ``peak_rss_mb`` is the largest of any one process.
        """
        total = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) != self.pid:
                    continue
                total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
                status = (entry / "status").read_text()
            except (OSError, IndexError, ValueError):
                continue
            hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
            self.children_peak_kb = max(self.children_peak_kb, hwm)
        return total

    def peak_rss_mb(self) -> float:
        """VmHWM (the kernel's high-water mark of resident memory), in MiB: of the largest process (workers too)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        return max(kb, self.children_peak_kb) / 1024

    def cpu_share(self, start: float, end: float, *, machine: bool = False) -> float | None:
        """Cores used on average between two wall times (1.0 = one core busy), by the process or the machine."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return None
        first, last = inside[0], inside[-1]
        k = 3 if machine else 1
        return (last[k] - first[k]) / (last[0] - first[0]) if last[0] > first[0] else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Server:
    """A server process started by the bench, with its URL and a probe; ``stop()`` sends SIGTERM."""

    proc: subprocess.Popen[bytes]
    url: str
    probe: ProcessProbe
    stderr_tail: deque[str]

    def stop(self, timeout: float = 60, *, kill: bool = False) -> int:
        """SIGTERM (graceful) or, with ``kill``, SIGKILL (a crash); returns the exit status."""
        self.probe.stop()
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_server(
    argv: list[str], *, marker: str = "listening", timeout: float = 60, cwd: Path = REPO
) -> Server:
    """Start ``argv`` in ``cwd``; wait for the stderr line containing ``marker`` and ``on HOST:PORT``."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
    assert proc.stderr is not None
    tail: deque[str] = deque(maxlen=50)
    deadline = time.monotonic() + timeout
    url = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        if not line:
            proc.wait()
            raise RuntimeError(f"{argv[2:4]} exited before listening: {''.join(tail)[-2000:]}")
        tail.append(line)
        if marker in line and " on " in line:
            scheme = "https" if f"{marker} https" in line else "http"
            url = f"{scheme}://" + line.rsplit(" on ", 1)[1].strip().split(",")[0].strip()
            break
    if not url:
        proc.kill()
        raise RuntimeError(f"{argv} did not start within {timeout} s")
    stderr = proc.stderr

    def drain() -> None:
        for raw in stderr:
            tail.append(raw.decode(errors="replace"))

    threading.Thread(target=drain, name="stderr-drain", daemon=True).start()
    return Server(proc, url, ProcessProbe(proc.pid), tail)


def start_gateway(config: Path) -> Server:
    """``python -m gateway serve``; ``$SANAQ_BENCH_GATEWAY_SRC`` names another source tree to run (A/B runs)."""
    src = Path(os.environ.get("SANAQ_BENCH_GATEWAY_SRC", REPO))
    return start_server([sys.executable, "-m", "gateway", "serve", "--config", str(config)], cwd=src)
