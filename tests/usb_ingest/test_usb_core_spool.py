"""The durable spool: nothing half-written looks complete, and entries leave only against a verified receipt."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from usb_ingest.errors import BadReceipt, SpoolError
from usb_ingest.spool import Spool
from usb_ingest.station import Station
from wire import key_id, make_receipt

from .images import Env, export, now_ms, seal


def open_spool(tmp_path: Path, **kw: int) -> Spool:
    return Spool.open(tmp_path / "spool", tmp_path / "receipts.jsonl", **kw)


def receipt_for(env: Env, envelope: bytes, *, seq: int, key: SigningKey | None = None,
                device_id: str = "TAB-0001") -> bytes:
    return make_receipt(batch_hash=hashlib.sha256(envelope).digest(), device_id=device_id, seq=seq,
                        received_at_ms=now_ms(), road="station:ST-01", sheets_accepted=2, sheets_quarantined=0,
                        gateway_key=key or env.authority.gateway_signing_key())


def gateway_keys(env: Env) -> dict[bytes, bytes]:
    pub = env.authority.gateway_public_key
    return {key_id(pub): pub}


def test_leftovers_of_interrupted_writes_are_removed_on_open(env: Env, tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    envelope = seal(env, "TAB-0001", 1)
    entry = spool.store_batch("TAB-0001", 1, envelope)
    (spool.batches_dir / ".tmp-0123456789abcdef").write_bytes(envelope[:100])  # a crash mid-write
    (spool.custody_dir / ".tmp-fedcba9876543210").write_bytes(b"partial")
    again = open_spool(tmp_path)
    assert sorted(p.name for p in again.batches_dir.iterdir()) == [entry.path.name]
    assert list(again.custody_dir.iterdir()) == []
    assert again.state_of("TAB-0001", 1, entry.batch_hash) == "pending"
    assert again.read(again.pending_batches()[0]) == envelope


def test_a_spool_entry_leaves_only_against_a_verified_receipt(env: Env, tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    envelope, other = seal(env, "TAB-0001", 1), seal(env, "TAB-0001", 2)
    entry = spool.store_batch("TAB-0001", 1, envelope)
    refusals = {
        "signed by another key": receipt_for(env, envelope, seq=1, key=SigningKey.generate()),
        "for another batch": receipt_for(env, other, seq=1),
        "for another seq": receipt_for(env, envelope, seq=2),
        "not a receipt": b"SNQR" + b"\0" * 100,
    }
    for why, receipt in refusals.items():
        with pytest.raises(BadReceipt):
            spool.complete(entry, receipt, gateway_keys(env))
        assert entry.path.exists(), why
    assert not spool.receipt_log.exists()
    spool.complete(entry, receipt_for(env, envelope, seq=1), gateway_keys(env))
    assert not entry.path.exists()
    [line] = spool.receipt_log.read_text().splitlines()
    assert json.loads(line)["batch_hash"] == entry.batch_hash.hex()
    assert spool.state_of("TAB-0001", 1, entry.batch_hash) == "delivered"
    assert spool.state_of("TAB-0001", 1, hashlib.sha256(other).digest()) == "conflict"
    assert open_spool(tmp_path).state_of("TAB-0001", 1, entry.batch_hash) == "delivered"  # survives restart


def test_a_torn_receipt_log_line_is_dropped_and_the_batch_sent_again(env: Env, tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    first, second = seal(env, "TAB-0001", 1), seal(env, "TAB-0001", 2)
    e1, e2 = spool.store_batch("TAB-0001", 1, first), spool.store_batch("TAB-0001", 2, second)
    spool.complete(e1, receipt_for(env, first, seq=1), gateway_keys(env))
    with spool.receipt_log.open("ab") as fh:
        fh.write(b'{"batch_hash":"' + e2.batch_hash.hex().encode()[:20])  # power cut during the append
    again = open_spool(tmp_path)
    assert again.receipt_log.read_bytes().endswith(b"}\n")
    assert again.state_of("TAB-0001", 1, e1.batch_hash) == "delivered"
    assert again.state_of("TAB-0001", 2, e2.batch_hash) == "pending"
    again.complete(again.pending_batches()[0], receipt_for(env, second, seq=2), gateway_keys(env))
    assert len(again.receipt_log.read_text().splitlines()) == 2


def test_a_crash_between_receipt_log_and_unlink_is_repaired(env: Env, tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    envelope = seal(env, "TAB-0001", 1)
    entry = spool.store_batch("TAB-0001", 1, envelope)
    saved = entry.path.read_bytes()
    spool.complete(entry, receipt_for(env, envelope, seq=1), gateway_keys(env))
    entry.path.write_bytes(saved)  # as if the process died before the unlink
    again = open_spool(tmp_path)
    assert again.pending_batches() == []


def test_refused_entries_are_moved_aside_with_the_reason(env: Env, tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    entry = spool.store_batch("TAB-0001", 1, seal(env, "TAB-0001", 1))
    target = spool.reject(entry, {"status": 409, "code": "conflict"})
    assert target.exists() and not entry.path.exists()
    assert json.loads((spool.rejected_dir / f"{target.name}.reason.json").read_text())["code"] == "conflict"
    assert spool.pending_batches() == []
    assert spool.state_of("TAB-0001", 1, entry.batch_hash) == "rejected"
    assert spool.counts().rejected == 1


def test_a_spool_entry_changed_on_disk_is_not_sent(env: Env, tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    entry = spool.store_batch("TAB-0001", 1, seal(env, "TAB-0001", 1))
    data = bytearray(entry.path.read_bytes())
    data[50] ^= 1
    entry.path.write_bytes(bytes(data))
    with pytest.raises(SpoolError, match="does not match its hash"):
        spool.read(entry)


def test_a_full_disk_stops_the_pull_cleanly(env: Env, tmp_path: Path) -> None:
    from dataclasses import replace

    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", range(1, 3))
    station = Station.open(replace(env.config(), spool_min_free_bytes=1 << 60))
    try:
        with pytest.raises(SpoolError, match="disk is full"):
            station.pull_volume(str(image))
        assert list(station.spool.batches_dir.iterdir()) == []
        assert "cannot store" in station.board.view.devices[0].message
    finally:
        station.close()


def test_one_state_directory_one_process(env: Env) -> None:
    from usb_ingest.errors import StateLocked

    first = Station.open(env.config())
    try:
        with pytest.raises(StateLocked):
            Station.open(env.config())
    finally:
        first.close()
    Station.open(env.config()).close()
