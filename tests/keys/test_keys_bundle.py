"""Authority directory, enrollment bundles and the gateway key export, on real files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from keys.authority import Authority
from keys.bundle import ProvisioningBundle
from keys.enrollment import enroll_station, enroll_tablet
from keys.errors import (
    AuthorityError,
    BundleError,
    CorruptKeyFileError,
    DuplicateDeviceError,
    KeysError,
    TlsError,
    WrongPassphraseError,
)
from keys.gateway_bundle import GatewayKeys, export_gateway
from keys.snapshots import SnapshotCache
from wire import sealing
from wire.snapshot import accept_snapshot

from .conftest import NOW

URL = "https://gateway.census.example:8443"


def _tablet(a: Authority, out: Path, device_id: str = "T-0001", **kw: Any) -> ProvisioningBundle:
    return enroll_tablet(a, out, device_id=device_id, usb_serial="R58M12345", institution="HOSP-01",
                         worker_id="W-17", gateway_url=URL, now_ms=NOW + 10, worker_name="Aigerim N.",
                         act_no="ACT-17", **kw)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_authority_layout_and_modes(authority: Authority) -> None:
    d = authority.path
    assert _mode(d) == 0o700
    for name in ("root.key", "data.key", "gateway.key", "ca.key", "gateway-tls.key", "registry.db"):
        assert _mode(d / name) == 0o600, name
    assert authority.registry.latest_version() == 1
    snap = accept_snapshot(authority.latest_snapshot() or b"", authority.root_public_key, now_ms=NOW)
    assert snap.data_key.public_key == authority.data_public_key
    assert [k.public_key for k in snap.gateway_keys] == [authority.gateway_public_key]
    assert bytes(authority.root_signing_key().verify_key) == authority.root_public_key
    assert bytes(authority.data_private_key().public_key) == authority.data_public_key
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]


def test_create_refuses_non_empty_target(tmp_path: Path, authority: Authority) -> None:
    with pytest.raises(AuthorityError):
        Authority.create(authority.path, now_ms=NOW)
    empty = tmp_path / "empty"
    empty.mkdir()
    with Authority.create(empty, now_ms=NOW) as a:
        assert a.registry.latest_version() == 1


def test_failed_create_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(TlsError):
        Authority.create(tmp_path / "a", now_ms=NOW, server_names=["not a name"])
    assert list(tmp_path.iterdir()) == []


def test_open_refuses_non_authority_and_mismatched_pub(tmp_path: Path, authority: Authority) -> None:
    with pytest.raises(AuthorityError):
        Authority.open(tmp_path)
    (authority.path / "data.pub").write_text(bytes(SigningKey.generate().verify_key).hex() + "\n")
    with pytest.raises(AuthorityError, match="data_key_id"):
        Authority.open(authority.path)


def test_private_key_not_matching_pub_refused(authority: Authority, tmp_path: Path) -> None:
    other = Authority.create(tmp_path / "other", now_ms=NOW)
    os.replace(other.path / "root.key", authority.path / "root.key")
    with pytest.raises(CorruptKeyFileError, match="does not match"):
        authority.publish(now_ms=NOW)
    other.close()


def test_encrypted_authority(tmp_path: Path) -> None:
    with Authority.create(tmp_path / "a", now_ms=NOW, passphrase=b"s3cret") as a:
        assert b"ENCRYPTED" in (a.path / "root.key").read_bytes()
        assert b"ENCRYPTED" in (a.path / "gateway-tls.key").read_bytes()
    with Authority.open(tmp_path / "a") as a:
        assert len(a.registry.list_tablets()) == 0  # reading needs no passphrase
        with pytest.raises(WrongPassphraseError):
            a.publish(now_ms=NOW)
    with Authority.open(tmp_path / "a", passphrase=b"wrong") as a:
        with pytest.raises(WrongPassphraseError):
            _tablet(a, tmp_path / "bundle")
        assert a.registry.list_tablets() == []
        assert not (tmp_path / "bundle").exists()
    with Authority.open(tmp_path / "a", passphrase=b"s3cret") as a:
        assert _tablet(a, tmp_path / "bundle").device_id == "T-0001"


def test_tablet_bundle_round_trip(authority: Authority, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    bundle = _tablet(authority, out)
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "device.key", "provisioning.json", "registry.snapshot"]
    assert _mode(out) == 0o700
    assert _mode(out / "device.key") == 0o600
    loaded = ProvisioningBundle.load(out)
    assert bytes(loaded.signing_key) == bytes(bundle.signing_key)
    assert (loaded.role, loaded.device_id, loaded.gateway_url) == ("tablet", "T-0001", URL)
    assert (loaded.usb_serial, loaded.institution, loaded.worker_id) == ("R58M12345", "HOSP-01", "W-17")
    assert loaded.root_public_key == authority.root_public_key
    assert loaded.data_public_key == authority.data_public_key
    assert loaded.gateway_keys == (authority.gateway_public_key,)
    assert loaded.gateway_key_map() == authority.gateway_key_map()
    record = authority.registry.tablet("T-0001")
    assert record.public_key == loaded.public_key and record.key_id == loaded.key_id
    snap = accept_snapshot(loaded.snapshot, authority.root_public_key, now_ms=NOW + 20)
    assert snap.version == 2 and snap.active_tablet("T-0001").public_key == loaded.public_key
    assert "signing_key" not in repr(loaded)
    provisioning = (out / "provisioning.json").read_text()
    assert "Aigerim" not in provisioning and "ACT-17" not in provisioning
    # The data key in the bundle is usable to seal for the authority.
    box = sealing.seal(b"sheet", loaded.data_public_key, bytes(32 * [7]))
    assert sealing.open_sealed(box, authority.data_public_key, bytes(authority.data_private_key())) == b"sheet"


def test_station_bundle_with_passphrase(authority: Authority, tmp_path: Path) -> None:
    out = tmp_path / "station"
    enroll_station(authority, out, station_id="ST-7", gateway_url=URL, now_ms=NOW, location="Region 3",
                   bundle_passphrase=b"station-pw")
    with pytest.raises(WrongPassphraseError):
        ProvisioningBundle.load(out)
    b = ProvisioningBundle.load(out, b"station-pw")
    assert (b.role, b.device_id, b.usb_serial) == ("station", "ST-7", None)
    assert authority.registry.station("ST-7").location == "Region 3"


def test_enrollment_refusals_leave_registry_unchanged(authority: Authority, tmp_path: Path) -> None:
    _tablet(authority, tmp_path / "b1")
    version = authority.registry.latest_version()
    with pytest.raises(BundleError, match="exists"):
        _tablet(authority, tmp_path / "b1", device_id="T-0002")
    with pytest.raises(DuplicateDeviceError):
        _tablet(authority, tmp_path / "b2")
    with pytest.raises(BundleError, match="gateway_url"):
        enroll_tablet(authority, tmp_path / "b3", device_id="T-0003", usb_serial="S", institution="I",
                      worker_id="W", gateway_url="http://plain.example", now_ms=NOW)
    assert [t.device_id for t in authority.registry.list_tablets()] == ["T-0001"]
    assert authority.registry.latest_version() == version
    assert not (tmp_path / "b2").exists() and not (tmp_path / "b3").exists()


def _edit(out: Path, change: Any) -> None:
    body = json.loads((out / "provisioning.json").read_text())
    change(body)
    (out / "provisioning.json").write_text(json.dumps(body))


OTHER_KEY = bytes(SigningKey.generate().verify_key).hex()


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("v", lambda b: b.update(v=2)),
        ("role", lambda b: b.update(role="gateway")),
        ("missing", lambda b: b.pop("worker_id")),
        ("extra", lambda b: b.update(worker_name="Aigerim")),
        ("key_id", lambda b: b.update(key_id="00" * 16)),
        ("key_id", lambda b: b.update(key_id="AB" * 16)),
        ("gateway_url", lambda b: b.update(gateway_url="http://gateway.example")),
        ("gateway_url", lambda b: b.update(gateway_url="https://user:pw@gateway.example")),
        ("members", lambda b: b.update(gateway_keys=[OTHER_KEY])),  # keys come from the snapshot only
        ("members", lambda b: b.update(data_public_key=OTHER_KEY)),
        ("census", lambda b: b.update(census={"date": "2020-10-32", "utc_offset_minutes": 360})),
        ("census", lambda b: b.update(census={"date": "2020-10-01", "utc_offset_minutes": "360"})),
        ("census", lambda b: b.update(census={"date": "2020-10-01"})),
        ("census", lambda b: b.update(census="2020-10-01")),
        ("registry.snapshot", lambda b: b.update(root_public_key=OTHER_KEY)),
        ("registry.snapshot", lambda b: b.update(device_id="T-9999")),
        ("device_id", lambda b: b.update(device_id="../etc")),
        ("usb_serial", lambda b: b.update(usb_serial=7)),
        ("members", lambda b: b.update(role="station")),
    ],
)
def test_bad_bundle_fields(authority: Authority, tmp_path: Path, field: str, change: Any) -> None:
    out = tmp_path / "bundle"
    _tablet(authority, out)
    _edit(out, change)
    with pytest.raises(BundleError) as info:
        ProvisioningBundle.load(out)
    named = str(info.value)
    if field in ("missing", "extra"):
        assert "worker" in named
    else:
        assert field in named


@pytest.mark.parametrize("broken", ["provisioning.json", "ca.crt", "registry.snapshot"])
def test_bundle_file_missing_or_garbage(authority: Authority, tmp_path: Path, broken: str) -> None:
    out = tmp_path / "bundle"
    _tablet(authority, out)
    (out / broken).write_bytes(b"garbage")
    with pytest.raises(BundleError):
        ProvisioningBundle.load(out)
    (out / broken).unlink()
    with pytest.raises(BundleError):
        ProvisioningBundle.load(out)


def test_gateway_export(authority: Authority, tmp_path: Path) -> None:
    gk = export_gateway(authority, tmp_path / "gw", passphrase=b"gw-pass")
    names = sorted(p.name for p in gk.path.iterdir())
    assert "root.key" not in names and "ca.key" not in names
    assert names == ["ca.crt", "data.key", "gateway-tls.crt", "gateway-tls.key", "gateway.json", "gateway.key",
                     "registry.snapshot", "root.pub"]
    loaded = GatewayKeys.load(gk.path, b"gw-pass")
    assert loaded.receipt_public_key == authority.gateway_public_key
    assert bytes(loaded.data_key) == bytes(authority.data_private_key())
    assert loaded.server_names == ("localhost", "127.0.0.1")
    loaded.server_ssl_context(b"gw-pass")
    with pytest.raises(WrongPassphraseError):
        GatewayKeys.load(gk.path)
    (tmp_path / "state").mkdir()
    cache = SnapshotCache.open(tmp_path / "state" / "registry.snapshot", loaded.root_public_key)
    assert cache.offer(loaded.snapshot_path.read_bytes(), now_ms=NOW).version == 1
    with pytest.raises(BundleError):
        export_gateway(authority, tmp_path / "gw")


def test_gateway_export_refuses_swapped_key(authority: Authority, tmp_path: Path) -> None:
    gk = export_gateway(authority, tmp_path / "gw")
    other = export_gateway(Authority.create(tmp_path / "other", now_ms=NOW), tmp_path / "gw2")
    os.replace(other.path / "gateway.key", gk.path / "gateway.key")
    with pytest.raises(CorruptKeyFileError, match=r"gateway\.key"):
        GatewayKeys.load(gk.path)



JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=70),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=10,
)
MEMBERS = ["v", "role", "device_id", "key_id", "gateway_url", "root_public_key", "data_public_key", "census",
           "usb_serial", "institution", "worker_id", "extra"]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fuzz")
    with Authority.create(base / "auth", now_ms=NOW) as a:
        _tablet(a, base / "b")
    (base / "orig.json").write_bytes((base / "b" / "provisioning.json").read_bytes())
    return base


@settings(max_examples=60, deadline=None)
@given(replacements=st.dictionaries(st.sampled_from(MEMBERS), JSON_VALUES, min_size=1, max_size=3))
def test_mutated_provisioning_raises_only_keys_errors(bundle_dir: Path, replacements: dict[str, Any]) -> None:
    """Whatever provisioning.json holds, loading either fails with a KeysError or the content is unchanged."""
    original = json.loads((bundle_dir / "orig.json").read_text())
    body = original | replacements
    (bundle_dir / "b" / "provisioning.json").write_text(json.dumps(body))
    try:
        ProvisioningBundle.load(bundle_dir / "b")
    except KeysError:
        return
    assert body == original
