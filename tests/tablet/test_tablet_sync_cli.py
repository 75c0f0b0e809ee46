"""``sanaq-tablet sync`` in a subprocess, over TLS pinned to the census CA of a real authority's bundle."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from keys import Authority
from tablet.identity import load_identity
from tablet.outbox import Outbox
from tablet.provision import install_identity
from tests.gateway.harness import now_ms

from .test_tablet_sync_bed import GatewayBed, engine_for, enroll, fill_and_pack, push_registry

REPO = Path(__file__).resolve().parents[2]
DEVICE = "tab-sync-01"


@dataclass
class Setup:
    authority: Authority
    bed: GatewayBed
    home: Path


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    authority = Authority.create(tmp_path / "authority", now_ms=now_ms())
    bed = await GatewayBed.of_authority(authority, tmp_path / "census.db").start()
    bundle = enroll(authority, tmp_path / "bundle", DEVICE, bed.url)  # https://127.0.0.1:<port>
    await push_registry(authority, bed)
    home = tmp_path / "home"
    install_identity(home, bundle, passphrase=None, now_ms=now_ms())
    yield Setup(authority, bed, home)
    await bed.stop()
    authority.close()


async def start_cli(home: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tablet", "--home", str(home), *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def cli(home: Path, *args: str) -> tuple[int, str, str]:
    proc = await start_cli(home, *args)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def open_seqs(home: Path) -> list[int]:
    with Outbox.open(home / "outbox.db", device_id=DEVICE, now_ms=now_ms()) as ob:
        return [b.seq for b in ob.pending_batches()]


async def test_sync_over_tls_delivers_everything_once(setup: Setup) -> None:
    fill_and_pack(setup.home / "outbox.db", load_identity(setup.home), 25, pack=False)
    code, out, err = await cli(setup.home, "--json", "sync", "--max-per-batch", "10")
    assert code == 0, err
    report = json.loads(out)
    assert (report["outcome"], report["packed"], report["stored"], report["receipts_verified"]) == (
        "complete", 3, 3, 3)
    assert report["state"]["highest_contiguous"] == 3 and report["stop"] is None
    stored = setup.bed.stored(DEVICE)
    assert sorted(stored) == [(DEVICE, 1), (DEVICE, 2), (DEVICE, 3)]
    assert open_seqs(setup.home) == []
    with Outbox.open(setup.home / "outbox.db", device_id=DEVICE, now_ms=now_ms()) as ob:
        assert all(ob.receipt(s) == stored[(DEVICE, s)][1] for s in (1, 2, 3))

    code, out, _ = await cli(setup.home, "sync")  # human output, nothing left to do
    assert code == 0 and out.startswith("sync complete: 0 receipts verified")


async def test_revoked_tablet_stops_with_a_clear_report(setup: Setup) -> None:
    fill_and_pack(setup.home / "outbox.db", load_identity(setup.home), 8)
    setup.authority.registry.revoke(DEVICE, reason="reported lost", now_ms=now_ms())
    setup.authority.publish(now_ms=now_ms())
    await push_registry(setup.authority, setup.bed)
    code, out, err = await cli(setup.home, "sync")
    assert code == 3
    *logs, last = err.splitlines()  # JSON log lines, then the one-line error
    assert last.startswith("sanaq-tablet: error: revoked:")
    assert any(json.loads(line)["event"] == "sync.stopped" for line in logs)
    assert "STOPPED: revoked" in out and "needs a person" in out and "Return the tablet" in out
    assert open_seqs(setup.home) == [1, 2]  # nothing deleted


async def test_watch_syncs_then_stops_cleanly_on_sigterm(setup: Setup) -> None:
    fill_and_pack(setup.home / "outbox.db", load_identity(setup.home), 5, pack=False)
    proc = await start_cli(setup.home, "--json", "sync", "--watch", "--interval", "3600")
    assert proc.stdout is not None
    first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
    assert (first["outcome"], first["stored"]) == ("complete", 1)
    proc.send_signal(signal.SIGTERM)  # it is now waiting out the hour
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert sorted(setup.bed.stored(DEVICE)) == [(DEVICE, 1)]


async def test_gateway_certificate_from_another_ca_is_refused(setup: Setup, tmp_path: Path) -> None:
    other = Authority.create(tmp_path / "other-authority", now_ms=now_ms())
    impostor = GatewayBed.of_authority(setup.authority, tmp_path / "impostor.db")
    impostor.ssl_cert = (other.tls_cert_path, other.tls_key_path)  # a good certificate, of the wrong CA
    await impostor.start()
    identity = load_identity(setup.home)
    fill_and_pack(setup.home / "outbox.db", identity, 5)
    try:
        async with engine_for(identity, setup.home / "outbox.db", impostor.url, ca=identity.ca_cert_path) as engine:
            report = await engine.sync_once()
    finally:
        await impostor.stop()
        other.close()
    assert report.stop is not None and (report.outcome, report.stop.code, report.retries) == ("stopped", "tls", 0)
    assert impostor.stored() == {} and open_seqs(setup.home) == [1]
