"""An operator's workspace: the authority machine's directory, a gateway's /etc/sanaq, the tools on PATH."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .doc_blocks import clean_env

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TABLETS = [("TAB-0001", "R58M0001", "HOSP-01", "W-17", "ACT-1"),
           ("TAB-0002", "R58M0002", "HOSP-01", "W-18", "ACT-2"),
           ("TAB-0003", "R58M0003", "SCH-04", "W-31", "ACT-3")]


def _free_port() -> int:
    """A port for the gateway's whole life across restarts (tablets keep the URL): bound once by the kernel."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "ceremony"  # the authority machine's working directory
        self.work.mkdir()
        (self.work / "tablets.csv").write_text("".join(",".join(t) + "\n" for t in TABLETS))
        self.etc = root / "etc-sanaq"
        self.etc.mkdir()
        self.keys = self.etc / "keys"
        self.config = self.etc / "gateway.toml"
        self.dropin = root / "sanaq-gateway.service.d"
        self.state = root / "standin"
        self.state.mkdir()
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        shim = root / "bin"
        shim.mkdir()
        standin = Path(__file__).parent / "systemctl_standin.py"
        (shim / "systemctl").write_text(f'#!/bin/sh\nexec {sys.executable} {standin} "$@"\n')
        (shim / "systemctl").chmod(0o755)
        self.env = clean_env(
            PATH=f"{shim}:{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            PYTHONPATH=str(REPO),
            KEYS=str(self.keys), CONFIG=str(self.config), DROPIN=str(self.dropin), GATEWAYS=self.url,
            OPS_TEST_STATE=str(self.state),
            # What LoadCredential= would hand the service: check-config and the gateway read the keys there.
            CREDENTIALS_DIRECTORY=str(self.keys),
        )

    def write_gateway_config(self) -> None:
        """The shipped example as `make install` puts it, with the site's address, port and store."""
        text = (REPO / "systemd/examples/gateway.toml").read_text()
        text = text.replace('host = "0.0.0.0"', 'host = "127.0.0.1"').replace("#port = 8443", f"port = {self.port}")
        text = text.replace('#database = "sqlite:///var/lib/sanaq-gateway/census.db"',
                            f'database = "sqlite:///{self.root}/census.db"')
        self.config.write_text(text)

    def stop_gateway(self) -> None:
        pid_file = self.state / "gateway.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)

    def gateway_log(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.state.glob("gateway-*.*")))


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace(tmp_path)
    try:
        yield ws
    finally:
        ws.stop_gateway()
