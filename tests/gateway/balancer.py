"""HAProxy running ``docs/examples/haproxy.cfg`` on 127.0.0.1, for the tests of the national topology.

Only the addresses, the public name and the CA path of the documented file are changed
(``balancer_config``); ``Balancer.start`` checks the file with ``haproxy -c`` and runs it in the foreground
(``-db``), its log in ``haproxy.log`` beside the config. HAProxy comes from Debian's ``haproxy`` package,
which ``make setup`` installs; without it the tests fail (never skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

__all__ = ["HAPROXY_CFG", "Balancer", "balancer_config", "free_port"]

HAPROXY_CFG = Path(__file__).resolve().parents[2] / "docs" / "examples" / "haproxy.cfg"
DOCUMENTED_NAME = "gateway.census.internal"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def balancer_config(text: str, *, port: int, servers: dict[str, int], ca_file: Path, name: str) -> str:
    """The documented file with this machine's addresses: the bind, the server lines, the name and the CA path."""
    text = re.sub(r"^(\s+bind )\S+", rf"\g<1>127.0.0.1:{port}", text, count=1, flags=re.MULTILINE)
    text = text.replace("/etc/haproxy/census-ca.crt", str(ca_file)).replace(DOCUMENTED_NAME, name)
    kept = [line for line in text.splitlines() if not line.lstrip().startswith("server ")]
    kept += [f"    server {server} 127.0.0.1:{p}" for server, p in servers.items()]
    return "\n".join(kept) + "\n"


@dataclass
class Balancer:
    proc: asyncio.subprocess.Process
    port: int
    log_path: Path
    _log: IO[bytes]

    @classmethod
    async def start(cls, directory: Path, *, servers: dict[str, int], ca_file: Path, name: str) -> Balancer:
        haproxy = shutil.which("haproxy")
        assert haproxy, "HAProxy not installed: `make setup` installs the Debian package haproxy"
        port = free_port()
        cfg = directory / "haproxy.cfg"
        cfg.write_text(
            balancer_config(HAPROXY_CFG.read_text("utf-8"), port=port, servers=servers, ca_file=ca_file, name=name)
        )
        check = await asyncio.to_thread(
            subprocess.run, [haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
        log_path = directory / "haproxy.log"
        log = log_path.open("wb")
        proc = await asyncio.create_subprocess_exec(haproxy, "-db", "-f", str(cfg), stdout=log, stderr=log)
        return cls(proc, port, log_path, log)

    async def until_serving(self, session: aiohttp.ClientSession, url: str, timeout_s: float = 20.0) -> None:
        """Until ``url`` (a ``/readyz`` through the balancer) answers 200; fails if HAProxy exits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            assert self.proc.returncode is None, self.log_path.read_text(errors="replace")
            with contextlib.suppress(OSError, aiohttp.ClientError, TimeoutError):
                async with session.get(url) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise AssertionError(f"HAProxy never answered {url}: {self.log_path.read_text(errors='replace')}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._log.close()
