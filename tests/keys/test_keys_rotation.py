"""``sanaq-keys rotate``: what each rotation changes, what it keeps, and that a refused one changes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from keys.authority import Authority
from keys.bundle import ProvisioningBundle
from keys.enrollment import enroll_tablet
from keys.errors import AuthorityError, WrongPassphraseError
from keys.files import load_data_key
from keys.gateway_bundle import GatewayKeys, export_gateway
from keys.rotation import prepare_receipt, rotate_data, rotate_receipt, rotate_tls, server_names_of
from keys.tls import load_cert
from wire.keyids import key_id
from wire.snapshot import accept_snapshot
from wire.syncstate import make_sync_state, parse_sync_state

from .conftest import DAY_MS, NOW

WEEK = 7 * DAY_MS
URL = "https://127.0.0.1:8443"


def _snapshot(a: Authority):  # type: ignore[no-untyped-def]
    return accept_snapshot(a.snapshot_path.read_bytes(), a.root_public_key, now_ms=NOW)


def _tablet(a: Authority, out: Path, device: str) -> ProvisioningBundle:
    return enroll_tablet(a, out, device_id=device, usb_serial=f"S-{device}", institution="HOSP-01",
                         worker_id="W-1", gateway_url=URL, now_ms=NOW)


def test_receipt_rotation_keeps_old_receipts_verifiable(authority: Authority) -> None:
    old_key = authority.gateway_signing_key()
    state = make_sync_state(device_id="T-1", issued_at_ms=NOW, highest_contiguous=3, max_seq=3, gaps=[],
                            last_sync_ms=NOW, gateway_key=old_key)
    rotation = rotate_receipt(authority, now_ms=NOW + 1, validity_ms=WEEK)
    assert rotation.old_key_id == key_id(bytes(old_key.verify_key)).hex() != rotation.new_key_id
    with Authority.open(authority.path) as again:  # authority.json agrees with the new files
        assert again.gateway_key_id.hex() == rotation.new_key_id
        assert bytes(again.gateway_signing_key().verify_key) == again.gateway_public_key
        keys = again.gateway_key_map()
    assert parse_sync_state(state, keys).highest_contiguous == 3
    snap = _snapshot(authority)
    assert snap.version == rotation.snapshot_version
    assert {k.public_key for k in snap.gateway_keys} == {bytes(old_key.verify_key), authority.gateway_public_key}
    assert list((authority.path / "retired").glob("receipt-*.key")) == []  # the retired private half is gone


def test_prepared_receipt_key_is_in_bundles_before_the_switch(authority: Authority, tmp_path: Path) -> None:
    current = authority.gateway_public_key
    prepared = prepare_receipt(authority, now_ms=NOW, validity_ms=WEEK)
    assert authority.gateway_public_key == current  # the gateway keeps signing with the current key
    bundle = _tablet(authority, tmp_path / "t1", "T-1")
    nxt = authority.next_receipt_public_key()
    assert nxt is not None and key_id(nxt).hex() == prepared.new_key_id
    assert set(bundle.gateway_keys) == {current, nxt}
    with pytest.raises(AuthorityError, match="already prepared"):
        prepare_receipt(authority, now_ms=NOW, validity_ms=WEEK)
    rotate_receipt(authority, now_ms=NOW + 1, validity_ms=WEEK)
    assert authority.gateway_public_key == nxt  # the switch is to the key every bundle already lists
    assert authority.next_receipt_public_key() is None
    assert set(bundle.gateway_keys) <= set(authority.receipt_public_keys())


def test_data_rotation_keeps_and_exports_the_retired_key(authority: Authority, tmp_path: Path) -> None:
    old = authority.data_private_key()
    rotation = rotate_data(authority, now_ms=NOW + 1, validity_ms=WEEK)
    assert rotation.old_key_id == key_id(bytes(old.public_key)).hex()
    assert _snapshot(authority).data_key.public_key == authority.data_public_key != bytes(old.public_key)
    keys = export_gateway(authority, tmp_path / "gw")
    assert keys.data_public_key == authority.data_public_key
    assert keys.previous_data_key_files == (f"data-{rotation.old_key_id}.key",)
    kept = load_data_key(tmp_path / "gw" / keys.previous_data_key_files[0])
    assert bytes(kept) == bytes(old)
    assert (tmp_path / "gw" / keys.previous_data_key_files[0]).stat().st_mode & 0o077 == 0
    assert GatewayKeys.load(tmp_path / "gw").previous_data_key_files == keys.previous_data_key_files


def test_tls_rotation_new_names_new_expiry_same_ca(authority: Authority) -> None:
    old = load_cert(authority.tls_cert_path)
    later = NOW + 30 * DAY_MS
    rotation = rotate_tls(authority, now_ms=later, validity_ms=WEEK, server_names=["gw.census.example", "10.8.0.7"],
                          validity_days=90)
    new = load_cert(authority.tls_cert_path)
    assert new.serial_number != old.serial_number
    assert server_names_of(new) == ["gw.census.example", "10.8.0.7"] == list(rotation.server_names)
    start = dt.datetime.fromtimestamp(later / 1000, dt.UTC)
    assert start + dt.timedelta(days=89) < new.not_valid_after_utc <= start + dt.timedelta(days=90)
    ca = load_cert(authority.ca_cert_path)
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    new.verify_directly_issued_by(ca)
    keep = rotate_tls(authority, now_ms=later, validity_ms=WEEK, server_names=None)
    assert keep.server_names == ("gw.census.example", "10.8.0.7")  # no names given: the current ones kept
    assert isinstance(new, x509.Certificate)


@pytest.mark.parametrize("rotate", [rotate_receipt, rotate_data,
                                    lambda a, **kw: rotate_tls(a, server_names=None, **kw)],
                         ids=["receipt", "data", "tls"])
def test_wrong_passphrase_changes_nothing(tmp_path: Path, rotate) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "authority"
    Authority.create(path, now_ms=NOW, passphrase=b"right horse battery").close()
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    with Authority.open(path, passphrase=b"wrong") as a, pytest.raises(WrongPassphraseError):
        rotate(a, now_ms=NOW + 1, validity_ms=WEEK)
    after = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    assert after == before
    assert not (path / "retired").exists()


def test_receipt_keys_stop_at_what_a_snapshot_can_list(authority: Authority) -> None:
    for i in range(15):
        rotate_receipt(authority, now_ms=NOW + i, validity_ms=WEEK)
    assert len(authority.receipt_public_keys()) == 16
    accept_snapshot(authority.snapshot_path.read_bytes(), authority.root_public_key, now_ms=NOW)
    version = authority.registry.latest_version()
    with pytest.raises(AuthorityError, match="at most 16 receipt keys"):
        rotate_receipt(authority, now_ms=NOW + 99, validity_ms=WEEK)
    with pytest.raises(AuthorityError, match="at most 16 receipt keys"):
        prepare_receipt(authority, now_ms=NOW + 99, validity_ms=WEEK)
    assert authority.registry.latest_version() == version and len(authority.receipt_public_keys()) == 16
