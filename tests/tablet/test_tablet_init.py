"""``sanaq-tablet init``: installing a provisioning bundle, all or nothing, and where the seq line starts."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from keys import Authority, enroll_station
from tablet.errors import DeviceMismatchError, IdentityError, IdentityExistsError, OutboxError
from tablet.identity import load_identity
from tablet.outbox import Outbox
from tablet.provision import install_identity, set_seq_floor
from tests.gateway.harness import now_ms

from .test_tablet_sync_bed import GatewayBed, engine_for, enroll, fill_and_pack, push_registry

REPO = Path(__file__).resolve().parents[2]
URL = "https://127.0.0.1:8443"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority.create(tmp_path_factory.mktemp("init") / "authority", now_ms=now_ms())


async def cli(home: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tablet", "--home", str(home), *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_init_installs_a_passphrase_protected_bundle(authority: Authority, tmp_path: Path) -> None:
    bundle = enroll(authority, tmp_path / "bundle", "tab-init-01", URL, bundle_passphrase=b"correct horse")
    secret = tmp_path / "pass"
    secret.write_bytes(b"correct horse\n")
    secret.chmod(0o600)
    home = tmp_path / "home"
    code, out, err = await cli(home, "--passphrase-file", str(secret), "--json", "init", "--bundle", str(bundle))
    assert code == 0, err
    assert json.loads(out) | {"home": ""} == {"device_id": "tab-init-01", "next_seq": 1, "gateway_url": URL,
                                             "gateway_max_seq": None, "home": ""}
    assert (mode(home), mode(home / "identity"), mode(home / "identity" / "device.key")) == (0o700, 0o700, 0o600)
    assert mode(home / "outbox.db") == 0o600
    assert sorted(p.name for p in home.iterdir()) == ["identity", "outbox.db"]  # no staging left behind
    identity = load_identity(home, b"correct horse")
    assert identity.device_id == "tab-init-01" and identity.ca_cert_path == home / "identity" / "ca.crt"

    code, _, err = await cli(home, "--passphrase-file", str(secret), "init", "--bundle", str(bundle))
    assert code == 2 and err.splitlines()[-1].startswith("sanaq-tablet: error: identity-exists:")
    code, _, err = await cli(home, "--passphrase-file", str(secret), "init", "--bundle", str(bundle), "--force")
    assert code == 0, err
    assert sorted(p.name for p in home.iterdir()) == ["identity", "outbox.db"]


def _station_bundle(authority: Authority, tmp: Path) -> tuple[Path, bytes | None]:
    out = tmp / "station"
    enroll_station(authority, out, station_id="st-init-01", gateway_url=URL, now_ms=now_ms())
    return out, None


def _wrong_passphrase(authority: Authority, tmp: Path) -> tuple[Path, bytes | None]:
    return enroll(authority, tmp / "b", "tab-init-02", URL, bundle_passphrase=b"right"), b"wrong"


def _tampered_snapshot(authority: Authority, tmp: Path) -> tuple[Path, bytes | None]:
    bundle = enroll(authority, tmp / "b", "tab-init-03", URL)
    snap = bundle / "registry.snapshot"
    data = bytearray(snap.read_bytes())
    data[-1] ^= 1
    os.chmod(snap, 0o644)
    snap.write_bytes(bytes(data))
    return bundle, None


def _key_missing(authority: Authority, tmp: Path) -> tuple[Path, bytes | None]:
    bundle = enroll(authority, tmp / "b", "tab-init-04", URL)
    (bundle / "device.key").unlink()
    return bundle, None


BAD_BUNDLES = [
    pytest.param(_station_bundle, id="station-bundle"),
    pytest.param(_wrong_passphrase, id="wrong-passphrase"),
    pytest.param(_tampered_snapshot, id="snapshot-altered"),
    pytest.param(_key_missing, id="device-key-missing"),
]


@pytest.mark.parametrize("make", BAD_BUNDLES)
def test_unusable_bundle_installs_nothing(authority: Authority, tmp_path: Path, make) -> None:
    bundle, passphrase = make(authority, tmp_path)
    home = tmp_path / "home"
    with pytest.raises(IdentityError):
        install_identity(home, bundle, passphrase=passphrase, now_ms=now_ms())
    assert not home.exists() or list(home.iterdir()) == []


def test_force_never_hands_an_outbox_to_another_device(authority: Authority, tmp_path: Path) -> None:
    first = enroll(authority, tmp_path / "first", "tab-init-05", URL)
    second = enroll(authority, tmp_path / "second", "tab-init-06", URL)
    home = tmp_path / "home"
    install_identity(home, first, passphrase=None, now_ms=now_ms())
    with pytest.raises(IdentityExistsError):
        install_identity(home, second, passphrase=None, now_ms=now_ms())
    with pytest.raises(DeviceMismatchError):
        install_identity(home, second, passphrase=None, now_ms=now_ms(), force=True)
    assert load_identity(home).device_id == "tab-init-05"  # the installed identity is untouched
    (home / "outbox.db").rename(tmp_path / "first-outbox.db")  # the operator moves the data away first
    assert install_identity(home, second, passphrase=None, now_ms=now_ms(), force=True).device_id == "tab-init-06"
    assert sorted(p.name for p in home.iterdir()) == ["identity", "outbox.db"]


def test_seq_floor_moves_forward_only_and_never_over_open_batches(authority: Authority, tmp_path: Path) -> None:
    home = tmp_path / "home"
    identity = install_identity(home, enroll(authority, tmp_path / "b", "tab-init-07", URL), passphrase=None,
                                now_ms=now_ms())
    assert set_seq_floor(home, identity, 10, now_ms=now_ms(), reason="test") == 10
    assert set_seq_floor(home, identity, 4, now_ms=now_ms(), reason="test") == 10
    fill_and_pack(home / "outbox.db", identity, 3)
    with Outbox.open(home / "outbox.db", device_id=identity.device_id, now_ms=now_ms()) as ob:
        assert [b.seq for b in ob.pending_batches()] == [10]
    with pytest.raises(OutboxError):
        set_seq_floor(home, identity, 20, now_ms=now_ms(), reason="test")


async def test_resume_from_gateway_continues_after_its_seqs(tmp_path: Path) -> None:
    authority = Authority.create(tmp_path / "authority", now_ms=now_ms())
    bed = await GatewayBed.of_authority(authority, tmp_path / "census.db").start()
    try:
        bundle = enroll(authority, tmp_path / "bundle", "tab-init-08", bed.url)
        await push_registry(authority, bed)
        old_home = tmp_path / "old-home"  # the tablet's first life: three batches delivered, then wiped
        identity = install_identity(old_home, bundle, passphrase=None, now_ms=now_ms())
        fill_and_pack(old_home / "outbox.db", identity, 15)
        async with engine_for(identity, old_home / "outbox.db", bed.url, ca=identity.ca_cert_path) as engine:
            assert (await engine.sync_once()).stored == 3

        home = tmp_path / "home"
        code, out, err = await cli(home, "--json", "init", "--bundle", str(bundle), "--resume-from-gateway")
        assert code == 0, err
        assert (json.loads(out)["gateway_max_seq"], json.loads(out)["next_seq"]) == (3, 4)
        fill_and_pack(home / "outbox.db", load_identity(home), 5)
        async with engine_for(identity, home / "outbox.db", bed.url, ca=identity.ca_cert_path) as engine:
            report = await engine.sync_once()
        assert (report.outcome, report.stored, report.seq_advanced_to) == ("complete", 1, None)
        assert sorted(bed.stored("tab-init-08")) == [("tab-init-08", s) for s in (1, 2, 3, 4)]
    finally:
        await bed.stop()
        authority.close()


async def test_resume_from_gateway_unreachable_installs_nothing(authority: Authority, tmp_path: Path) -> None:
    bundle = enroll(authority, tmp_path / "bundle", "tab-init-09", URL)
    home = tmp_path / "home"
    refused = "http://127.0.0.1:9"  # the discard port: nothing listens, connection refused
    code, _, err = await cli(home, "init", "--bundle", str(bundle), "--resume-from-gateway", "--gateway", refused,
                             "--max-attempts", "2")
    assert code == 2 and err.splitlines()[-1].startswith("sanaq-tablet: error: unreachable:")
    assert not (home / "identity").exists()
