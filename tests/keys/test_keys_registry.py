"""The SQLite device registry: state machine, completeness proof for returns, snapshot versions."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from keys.errors import (
    DuplicateDeviceError,
    IncompleteReturnError,
    InvalidRecordError,
    InvalidTransitionError,
    RegistryError,
    RegistrySchemaError,
    UnknownDeviceError,
)
from keys.registry import Registry
from wire.keyids import key_id
from wire.snapshot import accept_snapshot
from wire.syncstate import make_sync_state

from .conftest import DAY_MS, NOW, enroll

GATEWAY = SigningKey.generate()
GATEWAY_KEYS = {key_id(bytes(GATEWAY.verify_key)): bytes(GATEWAY.verify_key)}
ROOT = SigningKey.generate()
DATA_PUB = bytes(32 * [9])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    r = Registry(tmp_path / "registry.db")
    yield r
    r.close()


def _to_status(r: Registry, device_id: str, status: str) -> None:
    """Bring an issued tablet into ``status`` along an allowed path."""
    if status == "lost":
        r.mark_lost(device_id, reason="left in a taxi", now_ms=NOW + 1)
    elif status == "returned":
        r.mark_returned(device_id, now_ms=NOW + 1, signoff="accepted by supervisor")
    elif status == "revoked":
        r.revoke(device_id, reason="compromised", now_ms=NOW + 1)


def _apply(r: Registry, device_id: str, target: str) -> None:
    if target == "lost":
        r.mark_lost(device_id, reason="lost again", now_ms=NOW + 2)
    elif target == "returned":
        r.mark_returned(device_id, now_ms=NOW + 2, signoff="gap accepted")
    elif target == "revoked":
        r.revoke(device_id, reason="revoke", now_ms=NOW + 2)


# Written out by hand (not read from TABLET_TRANSITIONS) so a wrong table in the code fails here.
ALLOWED = {
    ("issued", "returned"), ("issued", "lost"), ("issued", "revoked"),
    ("lost", "returned"), ("lost", "revoked"),
    ("returned", "revoked"),
}
STATES = ["issued", "lost", "returned", "revoked"]


@pytest.mark.parametrize("start", STATES)
@pytest.mark.parametrize("target", ["lost", "returned", "revoked"])
def test_tablet_state_machine(registry: Registry, start: str, target: str) -> None:
    enroll(registry, "T-1")
    _to_status(registry, "T-1", start)
    assert registry.tablet("T-1").status == start
    events_before = len(registry.events("T-1"))
    if (start, target) in ALLOWED:
        _apply(registry, "T-1", target)
        t = registry.tablet("T-1")
        assert t.status == target
        assert t.status_changed_at_ms == NOW + 2
        ev = registry.events("T-1")[-1]
        assert (ev.from_status, ev.to_status) == (start, target)
    else:
        with pytest.raises(InvalidTransitionError):
            _apply(registry, "T-1", target)
        assert registry.tablet("T-1").status == start
        assert len(registry.events("T-1")) == events_before


def test_returned_at_is_set_only_by_return(registry: Registry) -> None:
    enroll(registry, "T-1")
    registry.mark_lost("T-1", reason="lost", now_ms=NOW + 5)
    assert registry.tablet("T-1").returned_at_ms is None
    registry.mark_returned("T-1", now_ms=NOW + 9, signoff="found, data checked by hand")
    registry.revoke("T-1", reason="decommissioned", now_ms=NOW + 20)
    t = registry.tablet("T-1")
    assert (t.status, t.returned_at_ms) == ("revoked", NOW + 9)


def test_station_revocation_is_terminal(registry: Registry) -> None:
    registry.enroll_station(station_id="ST-1", public_key=bytes(SigningKey.generate().verify_key), now_ms=NOW)
    registry.revoke("ST-1", reason="machine stolen", now_ms=NOW + 1)
    assert registry.station("ST-1").status == "revoked"
    with pytest.raises(InvalidTransitionError):
        registry.revoke("ST-1", reason="again", now_ms=NOW + 2)
    with pytest.raises(UnknownDeviceError):
        registry.mark_lost("ST-1", reason="stations are not lost", now_ms=NOW + 2)


UNKNOWN_OPS: dict[str, Callable[[Registry], object]] = {
    "revoke": lambda r: r.revoke("T-404", reason="x", now_ms=NOW),
    "mark_lost": lambda r: r.mark_lost("T-404", reason="x", now_ms=NOW),
    "mark_returned": lambda r: r.mark_returned("T-404", now_ms=NOW, signoff="x"),
    "tablet": lambda r: r.tablet("T-404"),
    "station": lambda r: r.station("T-404"),
}


@pytest.mark.parametrize("op", sorted(UNKNOWN_OPS))
def test_unknown_device(registry: Registry, op: str) -> None:
    with pytest.raises(UnknownDeviceError):
        UNKNOWN_OPS[op](registry)


def test_duplicates_refused_across_tablets_and_stations(registry: Registry) -> None:
    t = enroll(registry, "DEV-1")
    with pytest.raises(DuplicateDeviceError):
        enroll(registry, "DEV-1")
    with pytest.raises(DuplicateDeviceError):
        registry.enroll_station(station_id="DEV-1", public_key=bytes(SigningKey.generate().verify_key), now_ms=NOW)
    with pytest.raises(DuplicateDeviceError, match="public key"):
        registry.enroll_station(station_id="ST-9", public_key=t.public_key, now_ms=NOW)
    registry.enroll_station(station_id="ST-1", public_key=bytes(SigningKey.generate().verify_key), now_ms=NOW)
    with pytest.raises(DuplicateDeviceError):
        enroll(registry, "ST-1")
    assert [x.device_id for x in registry.list_tablets()] == ["DEV-1"]
    assert [x.station_id for x in registry.list_stations()] == ["ST-1"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("device_id", ""),
        ("device_id", "-starts-with-dash"),
        ("device_id", "has space"),
        ("device_id", "x" * 65),
        ("usb_serial", ""),
        ("usb_serial", "   "),
        ("usb_serial", "s" * 129),
        ("institution", "i" * 65),
        ("worker_id", "w\x00"),
        ("worker_name", "n" * 257),
        ("act_no", "a\nb"),
    ],
)
def test_invalid_tablet_fields(registry: Registry, field: str, value: str) -> None:
    kwargs: dict[str, str] = {
        "device_id": "T-1", "usb_serial": "S1", "institution": "HOSP", "worker_id": "W1",
        "worker_name": "Name", "act_no": "A1",
    }
    kwargs[field] = value
    with pytest.raises(InvalidRecordError) as info:
        registry.enroll_tablet(public_key=bytes(SigningKey.generate().verify_key), now_ms=NOW, **kwargs)
    assert info.value.facts["field"] == field
    assert registry.list_tablets() == []


def test_public_key_length_checked(registry: Registry) -> None:
    with pytest.raises(InvalidRecordError):
        registry.enroll_station(station_id="ST-1", public_key=b"short", now_ms=NOW)


def _state(device_id: str = "T-1", *, gaps: list[tuple[int, int]] | None = None, highest: int = 10,
           max_seq: int = 10, key: SigningKey = GATEWAY) -> bytes:
    return make_sync_state(device_id=device_id, issued_at_ms=NOW, highest_contiguous=highest, max_seq=max_seq,
                           gaps=gaps or [], last_sync_ms=NOW - 5, gateway_key=key)


@pytest.mark.parametrize(
    ("case", "sync_state", "last_seq", "signoff", "accepted"),
    [
        ("complete", _state(), 10, None, True),
        ("complete-nothing-produced", _state(highest=0, max_seq=0), 0, None, True),
        ("complete-with-note", _state(), 10, "all good", True),
        ("no-proof", None, None, None, False),
        ("gap", _state(gaps=[(4, 5)], highest=3, max_seq=10), 10, None, False),
        ("gap-signed-off", _state(gaps=[(4, 5)], highest=3, max_seq=10), 10, "seqs 4-5 destroyed by water", True),
        ("tablet-has-more", _state(), 12, None, False),
        ("inconsistent-state", _state(highest=7, max_seq=10), 10, None, False),
        ("gateway-has-more", _state(), 9, None, False),
        ("other-device", _state("T-2"), 10, None, False),
        ("unknown-gateway-key", _state(key=SigningKey.generate()), 10, None, False),
        ("tampered", _state()[:-1] + bytes([_state()[-1] ^ 1]), 10, None, False),
        ("last-seq-missing", _state(), None, None, False),
        ("signoff-only", None, None, "tablet broken, data lost, act 17", True),
        ("blank-signoff", None, None, "   ", False),
    ],
)
def test_mark_returned_needs_completeness_or_signoff(
    registry: Registry, case: str, sync_state: bytes | None, last_seq: int | None, signoff: str | None,
    accepted: bool,
) -> None:
    enroll(registry, "T-1")
    enroll(registry, "T-2")

    def attempt() -> None:
        registry.mark_returned("T-1", now_ms=NOW + 7, gateway_keys=GATEWAY_KEYS, sync_state=sync_state,
                               last_seq=last_seq, signoff=signoff)

    if accepted:
        attempt()
        t = registry.tablet("T-1")
        assert (t.status, t.returned_at_ms) == ("returned", NOW + 7)
        ev = registry.events("T-1")[-1]
        assert ev.evidence == sync_state
        if signoff:
            assert signoff in (t.reason or "")
    else:
        with pytest.raises((IncompleteReturnError, InvalidRecordError)):
            attempt()
        assert registry.tablet("T-1").status == "issued"


def _snapshot(r: Registry, now_ms: int = NOW) -> bytes:
    return r.build_snapshot(root_key=ROOT, data_public_key=DATA_PUB, gateway_public_keys=[bytes(GATEWAY.verify_key)],
                            now_ms=now_ms, validity_ms=DAY_MS)


def test_snapshot_versions_only_grow_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    versions = []
    for _ in range(2):
        with Registry(path) as r:
            versions += [accept_snapshot(_snapshot(r), bytes(ROOT.verify_key), now_ms=NOW).version for _ in range(2)]
    assert versions == [1, 2, 3, 4]
    with Registry(path) as r:
        assert r.latest_version() == 4
        assert [s.version for s in r.list_snapshots()] == [1, 2, 3, 4]


def test_snapshot_content(registry: Registry) -> None:
    enroll(registry, "T-1")
    enroll(registry, "T-2")
    registry.revoke("T-2", reason="stolen", now_ms=NOW + 1)
    registry.enroll_station(station_id="ST-1", public_key=bytes(SigningKey.generate().verify_key), now_ms=NOW)
    data = _snapshot(registry, NOW + 2)
    snap = accept_snapshot(data, bytes(ROOT.verify_key), now_ms=NOW + 3)
    assert snap.expires_at_ms == NOW + 2 + DAY_MS
    assert snap.active_tablet("T-1").worker_id == "W-17"
    assert snap.tablet("T-2").status == "revoked"
    assert snap.active_station("ST-1").key_id == registry.station("ST-1").key_id
    assert snap.data_key.public_key == DATA_PUB
    assert b"Aigerim" not in data  # worker_name stays in the registry
    assert b"ACT-2025" not in data  # so does the act number


def test_snapshot_validity_must_be_positive(registry: Registry) -> None:
    with pytest.raises(InvalidRecordError):
        registry.build_snapshot(root_key=ROOT, data_public_key=DATA_PUB, gateway_public_keys=[], now_ms=NOW,
                                validity_ms=0)
    assert registry.latest_version() == 0


def test_database_is_private_and_wal(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        Registry(tmp_path / "r.db").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "r.db").st_mode) == 0o600
    db = sqlite3.connect(tmp_path / "r.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version, name FROM schema_migrations").fetchall() == [
        (1, "initial"), (2, "station-role"), (3, "certificate-keys")]
    db.close()


def test_newer_schema_refused(tmp_path: Path) -> None:
    Registry(tmp_path / "r.db").close()
    db = sqlite3.connect(tmp_path / "r.db")
    db.execute("INSERT INTO schema_migrations VALUES (99, 'from the future')")
    db.commit()
    db.close()
    with pytest.raises(RegistrySchemaError):
        Registry(tmp_path / "r.db")


def test_garbage_database_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(RegistryError):
        Registry(path)
