"""``sanaq-keys push`` and ``registry-status`` against a real gateway on loopback, one line per instance."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import GatewayConfig, ServerConfig
from gateway.server import build_server
from gateway.staff.config import StaffConfig
from gateway.store_sqlite import SqliteStore
from keys.authority import Authority
from keys.cli import main

from .conftest import DAY_MS


def _dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on: bound, then closed
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Authority, str]]:
    now = int(time.time() * 1000)
    a = Authority.create(tmp_path / "authority", now_ms=now)
    config = GatewayConfig(database=f"sqlite:///{tmp_path / 'c.db'}", server=ServerConfig(plain_http=True, port=0),
                           staff=StaffConfig(enabled=False))
    server = build_server(config, SqliteStore(tmp_path / "c.db"), data_key=a.data_private_key(),
                          receipt_key=a.gateway_signing_key(), root_public_key=a.root_public_key,
                          bootstrap_snapshot=a.latest_snapshot())
    await server.start()
    try:
        yield a, f"http://127.0.0.1:{server.addresses[0][1]}"
    finally:
        await server.stop()
        a.close()


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_push_reports_each_instance_and_status_sees_the_version(
        live: tuple[Authority, str], capsys: pytest.CaptureFixture[str]) -> None:
    a, url = live
    auth = str(a.path)
    code, out, _ = await _cli(capsys, "registry-status", "--authority", auth, url)
    assert code == 0 and f"{url}: version 1, expires " in out and "up to date; ready" in out

    code, out, _ = await _cli(capsys, "publish", "--authority", auth)
    assert code == 0 and "Next: sanaq-keys push" in out
    code, out, _ = await _cli(capsys, "registry-status", "--authority", auth, url)
    assert code == 1 and f"{url}: version 1" in out and "behind: run sanaq-keys push" in out

    dead = _dead_url()
    code, out, _ = await _cli(capsys, "push", "--authority", auth, url, dead)
    assert code == 1
    assert f"  {url}: ok, version 2 in force" in out
    assert f"  {dead}: FAILED: unreachable: " in out
    assert "1 of 2 instances hold version 2" in out
    code, out, _ = await _cli(capsys, "registry-status", "--authority", auth, url)
    assert code == 0 and "version 2" in out and "up to date" in out


async def test_push_names_the_gateways_refusal(live: tuple[Authority, str], capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    """A snapshot from another authority: the instance's problem code is shown, nothing else changes."""
    a, url = live
    other = Authority.create(tmp_path / "other", now_ms=a.registry.list_snapshots()[-1].published_at_ms + DAY_MS)
    other.close()
    code, out, _ = await _cli(capsys, "push", "--authority", str(other.path), url)
    assert code == 1 and f"  {url}: FAILED: unknown-key: snapshot signed by an unknown key" in out
    code, out, _ = await _cli(capsys, "registry-status", "--authority", str(a.path), url)
    assert code == 0 and "version 1" in out
