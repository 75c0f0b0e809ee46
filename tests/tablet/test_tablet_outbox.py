"""The outbox: consecutive seqs, sealed once, durable, and nothing deleted without matching verified proof."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tablet.errors import (
    CoverageRefusedError,
    DeviceMismatchError,
    DuplicateSheetError,
    InvalidSheetError,
    OutboxSchemaError,
)
from tablet.outbox import Outbox
from tablet.sheet_schema import SheetValidator
from wire import decode_envelope, open_envelope, verify_envelope

from .conftest import DEVICE_ID, NOW, Keys, counter_rng, receipt_for, sheets, sync_state_for

REPO = Path(__file__).resolve().parents[2]


def _pack(outbox: Outbox, keys: Keys, *, per_batch: int = 10, now_ms: int = NOW) -> list:
    return outbox.pack(now_ms=now_ms, device_key=keys.device, data_public_key=keys.data_public,
                       max_per_batch=per_batch, rng=counter_rng())


def _opened(envelope: bytes, keys: Keys) -> list:
    verified = verify_envelope(decode_envelope(envelope), bytes(keys.device.verify_key))
    return open_envelope(verified, keys.data_public, bytes(keys.data))


def _files_contain(directory: Path, needle: bytes) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() and needle in p.read_bytes())


def test_consecutive_seqs_and_every_sheet_once(outbox: Outbox, keys: Keys) -> None:
    queued = sheets(35)
    assert outbox.add_sheets(queued, now_ms=NOW) == 35
    made = _pack(outbox, keys)
    assert [b.seq for b in made] == [1, 2, 3, 4]
    assert [b.record_count for b in made] == [10, 10, 10, 5]
    outbox.add_sheets(sheets(3, start=35), now_ms=NOW)
    assert [b.seq for b in _pack(outbox, keys)] == [5]
    opened = [s for b in outbox.pending_batches() for s in _opened(b.envelope, keys)]
    assert opened == sheets(38)  # in queue order, each exactly once
    assert _pack(outbox, keys) == []


def test_byte_budget_splits_batches(outbox: Outbox, keys: Keys) -> None:
    outbox.add_sheets(sheets(20), now_ms=NOW)
    made = outbox.pack(now_ms=NOW, device_key=keys.device, data_public_key=keys.data_public, max_per_batch=100,
                       max_batch_bytes=8_000, rng=counter_rng())
    assert len(made) > 2
    assert sum(b.record_count for b in made) == 20


def test_sealed_once_same_bytes_after_reopen(outbox_path: Path, keys: Keys) -> None:
    with Outbox.open(outbox_path, device_id=DEVICE_ID, now_ms=NOW) as ob:
        ob.add_sheets(sheets(25), now_ms=NOW)
        made = _pack(ob, keys)
    with Outbox.open(outbox_path, device_id=DEVICE_ID, now_ms=NOW + 1) as ob:
        again = ob.pending_batches()
        assert again == made  # byte-identical envelopes, nothing re-sealed
        assert ob.stats().next_seq == 4
        ob.add_sheets(sheets(1, start=25), now_ms=NOW)
        assert [b.seq for b in _pack(ob, keys)] == [4]


def test_outbox_file_is_private(outbox: Outbox, outbox_path: Path) -> None:
    assert stat.S_IMODE(outbox_path.stat().st_mode) == 0o600


def test_other_device_cannot_open(outbox_path: Path, outbox: Outbox) -> None:
    with pytest.raises(DeviceMismatchError):
        Outbox.open(outbox_path, device_id="tab-9999", now_ms=NOW)


@pytest.mark.parametrize("setup", ["newer", "foreign"])
def test_unknown_files_refused(tmp_path: Path, setup: str) -> None:
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path)
    if setup == "newer":
        conn.execute("PRAGMA user_version = 99")
    else:
        conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxSchemaError):
        Outbox.open(path, device_id=DEVICE_ID, now_ms=NOW)


def test_same_sheet_twice_is_stored_once_other_contents_refused(outbox: Outbox, keys: Keys) -> None:
    batch = sheets(5)
    assert outbox.add_sheets(batch, now_ms=NOW) == 5
    assert outbox.add_sheets(batch, now_ms=NOW) == 0
    changed = dict(batch[0], household_id="HH-00000001") if "household_id" in batch[0] else None
    if changed is not None:
        with pytest.raises(DuplicateSheetError):
            outbox.add_sheets([*sheets(2, start=5), changed], now_ms=NOW)
        assert outbox.stats().sheets_pending == 5  # all or nothing
    (made,) = _pack(outbox, keys)
    outbox.mark_receipted(receipt_for(keys, batch_hash=made.batch_hash, seq=1, records=5), now_ms=NOW)
    assert outbox.add_sheets(batch, now_ms=NOW) == 0  # delivered sheets stay known by id


@pytest.mark.parametrize(
    "bad",
    [[], "not a sheet", {"sheet_id": 5}, {"sheet_id": "x" * 65}, {"sheet_id": "a", "v": 1.5},
     {"sheet_id": "a", "blob": "x" * 70_000}],
    ids=["list", "string", "int-id", "long-id", "float", "oversize"],
)
def test_unusable_sheets_refused(outbox: Outbox, bad: object) -> None:
    with pytest.raises(InvalidSheetError):
        outbox.add_sheets([bad], now_ms=NOW)
    assert outbox.stats().sheets_pending == 0


def test_validator_refuses_schema_violations(outbox_path: Path) -> None:
    bad = dict(sheets(1)[0], form="hostel")
    with Outbox.open(outbox_path, device_id=DEVICE_ID, now_ms=NOW, validator=SheetValidator()) as ob:
        with pytest.raises(InvalidSheetError):
            ob.add_sheets([*sheets(2, start=1), bad], now_ms=NOW)
        assert ob.stats().sheets_pending == 0


def test_receipt_closes_the_batch_and_forgets_plaintext(outbox: Outbox, keys: Keys, outbox_path: Path) -> None:
    queued = sheets(12)
    outbox.add_sheets(queued, now_ms=NOW)
    first, second = _pack(outbox, keys)
    needle = b'"surname":"' + queued[3]["persons"][0]["surname"].encode() + b'"'  # only plaintext holds this
    assert _files_contain(outbox_path.parent, needle)
    receipt = receipt_for(keys, batch_hash=first.batch_hash, seq=1, records=10, quarantined=2)
    assert outbox.mark_receipted(receipt, now_ms=NOW + 10) is True
    assert outbox.mark_receipted(receipt, now_ms=NOW + 11) is False  # idempotent
    assert outbox.pending_batches() == [second]
    assert outbox.receipt(1) == receipt.raw
    stats = outbox.stats()
    assert (stats.batches_receipted, stats.sheets_delivered, stats.sheets_in_flight) == (1, 10, 2)
    assert _files_contain(outbox_path.parent, needle) == []
    assert _files_contain(outbox_path.parent, first.envelope[-64:]) == []


REFUSALS = {
    "other batch hash": {"batch_hash": b"\x01" * 32},
    "other device": {"device_id": "tab-0002"},
    "seq never sealed": {"seq": 3},
    "other seq of this device": {"seq": 2},
    "sheets missing from the count": {"records": 9},
}


@pytest.mark.parametrize("change", REFUSALS.values(), ids=REFUSALS.keys())
def test_mismatched_receipt_deletes_nothing(outbox: Outbox, keys: Keys, change: dict) -> None:
    outbox.add_sheets(sheets(20), now_ms=NOW)
    made = _pack(outbox, keys)
    fields = {"batch_hash": made[0].batch_hash, "seq": 1, "records": 10} | change
    with pytest.raises(CoverageRefusedError):
        outbox.mark_receipted(receipt_for(keys, **fields), now_ms=NOW)
    assert outbox.pending_batches() == made
    assert outbox.stats().sheets_delivered == 0


def test_outbox_takes_only_parsed_wire_objects(outbox: Outbox) -> None:
    with pytest.raises(TypeError):
        outbox.mark_receipted(b"receipt bytes", now_ms=NOW)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        outbox.apply_sync_state({"highest_contiguous": 5}, now_ms=NOW)  # type: ignore[arg-type]


def test_sync_state_covers_up_to_highest_contiguous(outbox: Outbox, keys: Keys) -> None:
    outbox.add_sheets(sheets(50), now_ms=NOW)
    made = _pack(outbox, keys)  # seqs 1..5
    coverage = outbox.apply_sync_state(sync_state_for(keys, highest=2, max_seq=4), now_ms=NOW + 1)
    assert (coverage.covered, coverage.held) == ((1, 2), ())
    assert [b.seq for b in outbox.pending_batches()] == [3, 4, 5]
    # a receipt arriving later for a covered batch is recorded, nothing else changes
    late = receipt_for(keys, batch_hash=made[1].batch_hash, seq=2, records=10)
    assert outbox.mark_receipted(late, now_ms=NOW + 2) is False
    assert outbox.receipt(2) == late.raw
    stats = outbox.stats()
    assert (stats.batches_covered, stats.batches_receipted, stats.highest_contiguous) == (1, 1, 2)


def test_sync_state_older_than_a_batch_holds_it(outbox: Outbox, keys: Keys) -> None:
    outbox.add_sheets(sheets(10), now_ms=NOW)
    _pack(outbox, keys, now_ms=NOW)
    outbox.add_sheets(sheets(10, start=10), now_ms=NOW)
    _pack(outbox, keys, now_ms=NOW + 120_000)  # seq 2 sealed after the state below was issued
    coverage = outbox.apply_sync_state(sync_state_for(keys, highest=2, issued_at_ms=NOW + 60_000), now_ms=NOW)
    assert (coverage.covered, coverage.held) == ((1,), (2,))
    assert [b.seq for b in outbox.pending_batches()] == [2]


@pytest.mark.parametrize(
    ("state_args", "why"),
    [({"highest": 1, "device_id": "tab-0002"}, "another device"),
     ({"highest": 3}, "never sealed"),
     ({"highest": 1, "max_seq": 5}, "never sealed")],
    ids=["other-device", "highest-beyond-next-seq", "max-seq-beyond-next-seq"],
)
def test_sync_state_refusals(outbox: Outbox, keys: Keys, state_args: dict, why: str) -> None:
    outbox.add_sheets(sheets(20), now_ms=NOW)
    made = _pack(outbox, keys)  # seqs 1..2
    with pytest.raises(CoverageRefusedError, match=why):
        outbox.apply_sync_state(sync_state_for(keys, **state_args), now_ms=NOW)
    assert outbox.pending_batches() == made


def test_stats_counts(outbox: Outbox, keys: Keys) -> None:
    outbox.add_sheets(sheets(15), now_ms=NOW)
    _pack(outbox, keys)
    outbox.add_sheets(sheets(4, start=15), now_ms=NOW)
    stats = outbox.stats()
    assert dataclasses.asdict(stats) | {"bytes_sealed": 0} == {
        "device_id": DEVICE_ID, "next_seq": 3, "sheets_pending": 4, "sheets_in_flight": 15, "sheets_delivered": 0,
        "batches_sealed": 2, "batches_receipted": 0, "batches_covered": 0, "bytes_sealed": 0,
        "last_received_at_ms": None, "highest_contiguous": 0,
    }
    assert stats.bytes_sealed == sum(b.size for b in outbox.pending_batches())


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from nacl.public import PrivateKey
    from nacl.signing import SigningKey
    from tablet.outbox import Outbox
    path, mode = sys.argv[1], sys.argv[2]
    calls = {"n": 0}
    def rng(n):
        calls["n"] += 1
        if mode == "crash" and calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # power cut while sealing the third batch
        return os.urandom(n)
    data_public = bytes(PrivateKey(b"\\x22" * 32).public_key)
    with Outbox.open(path, device_id="tab-0001", now_ms=1) as ob:
        ob.pack(now_ms=2, device_key=SigningKey(b"\\x11" * 32), data_public_key=data_public, max_per_batch=3, rng=rng)
    """
)


def _child(path: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(path), mode], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_crash_while_packing_loses_nothing_and_reuses_no_seq(outbox: Outbox, outbox_path: Path, keys: Keys) -> None:
    queued = sheets(30)
    outbox.add_sheets(queued, now_ms=NOW)
    proc = _child(outbox_path, "crash")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with Outbox.open(outbox_path, device_id=DEVICE_ID, now_ms=NOW) as ob:
        survived = ob.pending_batches()
        assert [b.seq for b in survived] == [1, 2]
        assert ob.stats().sheets_pending == 24
        rest = _pack(ob, keys, per_batch=3)
        assert [b.seq for b in rest] == list(range(3, 11))
        opened = [s for b in ob.pending_batches() for s in _opened(b.envelope, keys)]
    assert opened == queued


def test_two_processes_packing_at_once_share_one_seq_line(outbox: Outbox, outbox_path: Path, keys: Keys) -> None:
    queued = sheets(60)
    outbox.add_sheets(queued, now_ms=NOW)
    procs = [_child(outbox_path, "normal") for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    batches = outbox.pending_batches()
    assert [b.seq for b in batches] == list(range(1, 21))
    opened = [s for b in batches for s in _opened(b.envelope, keys)]
    assert sorted(s["sheet_id"] for s in opened) == sorted(s["sheet_id"] for s in queued)
    assert os.path.exists(outbox_path)
