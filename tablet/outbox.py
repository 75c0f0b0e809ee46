"""The tablet's outbox: sheets waiting to leave, sealed batches waiting for proof of arrival.

One SQLite file (WAL, ``synchronous=FULL``, ``secure_delete``, mode 0600),
bound at creation to one device id. Invariants:

* **Seqs are consecutive from 1 and never reused.** ``pack`` takes the seq from
  ``outbox_meta.next_seq`` and bumps it in the same transaction that stores the
  sealed envelope and assigns the sheets, so a crash either keeps all three or
  none; batch rows are never deleted. The one exception to "consecutive" is
  ``advance_next_seq``: a re-provisioned tablet whose device id already has
  batches at the gateway continues after them (the skipped seqs belong to the
  device's earlier outbox and are stored at the gateway). It only moves forward.
* **Sealed and signed once.** The stored envelope bytes are what every road
  (online, USB) sends; nothing re-seals a batch.
* **Nothing leaves without proof.** A batch's envelope and its sheets' plaintext
  are deleted only in the transaction that records a verified ``wire.Receipt``
  naming this device, that seq, that batch hash and every sheet of the batch,
  or a verified ``wire.SyncState`` of this device covering the seq. Anything
  else raises ``CoverageRefusedError`` and deletes nothing. The objects must
  come from ``wire.parse_receipt`` / ``wire.parse_sync_state``, which verify the
  gateway's signature; the outbox checks what they say against what it holds.
* Deleted plaintext does not linger: ``secure_delete`` zeroes freed space and
  the WAL is checkpointed and truncated after every closing.
* A sync state carries no batch hashes, so it is trusted only for seqs this
  outbox sealed before the state was issued: a state naming a seq at or above
  ``next_seq`` is refused, and batches sealed (tablet clock) after the state's
  ``issued_at_ms`` are held open until a later state or their receipt.

Sheet ids stay known after delivery (contents deleted), so a sheet queued twice
is stored once; the same id with other contents is ``DuplicateSheetError``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import structlog
from nacl.signing import SigningKey

from runtime.private_files import prepare_private_sqlite
from wire import Receipt, SyncState, canonical, check_device_id, seal_batch
from wire.errors import DecodeError, WireError
from wire.limits import DEFAULT_LIMITS, Limits

from .errors import (
    CoverageRefusedError,
    DeviceMismatchError,
    DuplicateSheetError,
    InvalidSheetError,
    OutboxError,
    OutboxSchemaError,
)
from .outbox_schema import Coverage, OutboxStats, StoredBatch, migrate
from .sheet_schema import SHEET_SCHEMA_NAME, SheetValidator

__all__ = ["DEFAULT_MAX_BATCH_BYTES", "DEFAULT_MAX_PER_BATCH", "Outbox"]

DEFAULT_MAX_PER_BATCH = 100
DEFAULT_MAX_BATCH_BYTES = 1024 * 1024  # plaintext sheet bytes per batch; the envelope cap is 4 MiB
_MAX_SHEET_ID = 64

log = structlog.get_logger("tablet.outbox")


class Outbox:
    """Open with ``Outbox.open(path, device_id=..., now_ms=...)``; use as a context manager or ``close()``."""

    def __init__(self, conn: sqlite3.Connection, device_id: str, validator: SheetValidator | None, limits: Limits):
        self._conn = conn
        self.device_id = device_id
        self._validator = validator
        self._limits = limits

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        device_id: str,
        now_ms: int,
        validator: SheetValidator | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> Outbox:
        """Open (creating if missing) the outbox of ``device_id``; ``validator`` checks sheets on ``add_sheets``."""
        try:
            check_device_id(device_id)
        except DecodeError as e:
            raise DeviceMismatchError("device id does not match the protocol's pattern") from e
        path = Path(path)
        prepare_private_sqlite(path)  # 0600 before SQLite creates -wal/-shm with its mode: it holds personal data
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")
            outbox = cls(conn, device_id, validator, limits)
            with outbox._tx():
                if migrate(conn) == 0:
                    conn.execute(
                        "INSERT INTO outbox_meta (id, device_id, next_seq, created_at_ms) VALUES (1, ?, 1, ?)",
                        (device_id, now_ms),
                    )
                row = conn.execute("SELECT device_id FROM outbox_meta WHERE id = 1").fetchone()
            if row is None:
                raise OutboxSchemaError("outbox has no meta row", path=str(path))
            if row[0] != device_id:
                raise DeviceMismatchError("outbox belongs to another device", device_id=device_id, holder=row[0])
        except sqlite3.DatabaseError as e:
            conn.close()
            raise OutboxSchemaError("file is not a usable outbox", path=str(path)) from e
        except BaseException:
            conn.close()
            raise
        return outbox

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front (BEGIN IMMEDIATE) so seq allocation cannot race."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- queueing ---------------------------------------------------------------------------------------

    def _encode_sheet(self, sheet: Any) -> tuple[str, bytes]:
        if not isinstance(sheet, dict):
            raise InvalidSheetError("a sheet must be a JSON object")
        sheet_id = sheet.get("sheet_id")
        if not isinstance(sheet_id, str) or not 1 <= len(sheet_id) <= _MAX_SHEET_ID:
            raise InvalidSheetError("sheet has no usable sheet_id")
        if self._validator is not None:
            self._validator.check(sheet)
        try:
            body = canonical.encode(sheet, max_depth=self._limits.max_json_depth - 3)
        except WireError as e:
            raise InvalidSheetError("sheet is not canonical-JSON encodable", sheet_id=sheet_id) from e
        if len(body) > self._limits.max_sheet_bytes:
            raise InvalidSheetError("sheet too large", sheet_id=sheet_id, size=len(body))
        return sheet_id, body

    def add_sheets(self, sheets: Sequence[Any], *, now_ms: int) -> int:
        """Queue sheets, all or none; returns how many were new (a sheet already queued is skipped)."""
        encoded = [self._encode_sheet(s) for s in sheets]
        added = 0
        with self._tx() as conn:
            for sheet_id, body in encoded:
                digest = hashlib.sha256(body).digest()
                row = conn.execute("SELECT body_sha256 FROM sheets WHERE sheet_id = ?", (sheet_id,)).fetchone()
                if row is not None:
                    if bytes(row[0]) != digest:
                        raise DuplicateSheetError("sheet id already queued with other contents", sheet_id=sheet_id)
                    continue
                conn.execute(
                    "INSERT INTO sheets (sheet_id, body_sha256, body, added_at_ms) VALUES (?, ?, ?, ?)",
                    (sheet_id, digest, body, now_ms),
                )
                added += 1
        log.info("outbox.sheets.added", device_id=self.device_id, added=added, offered=len(encoded))
        return added

    # -- packing ----------------------------------------------------------------------------------------

    def pack(
        self,
        *,
        now_ms: int,
        device_key: SigningKey,
        data_public_key: bytes,
        max_per_batch: int = DEFAULT_MAX_PER_BATCH,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> list[StoredBatch]:
        """Seal every pending sheet into batches; one transaction per batch. Returns the new batches.

        ``rng(32)`` supplies each batch's ephemeral sealing secret (tests inject a
        deterministic one). A batch holds up to ``max_per_batch`` sheets and, past
        its first sheet, at most ``max_batch_bytes`` of sheet JSON.
        """
        if not 1 <= max_per_batch <= self._limits.max_records_per_batch:
            raise ValueError("max_per_batch outside 1..max_records_per_batch")
        if max_batch_bytes > self._limits.max_ciphertext_bytes // 2:
            raise ValueError("max_batch_bytes leaves no room under the envelope size limit")
        made: list[StoredBatch] = []
        while True:
            with self._tx() as conn:
                rows = conn.execute(
                    "SELECT id, body FROM sheets WHERE batch_seq IS NULL ORDER BY id LIMIT ?", (max_per_batch,)
                ).fetchall()
                if not rows:
                    break
                chosen: list[tuple[int, bytes]] = []
                total = 0
                for row_id, body in rows:
                    if chosen and total + len(body) > max_batch_bytes:
                        break
                    chosen.append((row_id, bytes(body)))
                    total += len(body)
                (seq,) = conn.execute("SELECT next_seq FROM outbox_meta WHERE id = 1").fetchone()
                sheets = [canonical.decode(b, max_bytes=self._limits.max_sheet_bytes) for _, b in chosen]
                envelope = seal_batch(
                    device_id=self.device_id,
                    seq=seq,
                    sheets=sheets,
                    sealed_at_ms=now_ms,
                    device_key=device_key,
                    data_public_key=data_public_key,
                    ephemeral_secret=rng(32),
                    schema=SHEET_SCHEMA_NAME,
                    limits=self._limits,
                )
                batch = StoredBatch(seq, envelope, hashlib.sha256(envelope).digest(), len(sheets), now_ms)
                conn.execute(
                    "INSERT INTO batches (seq, state, batch_hash, envelope, size, record_count, sealed_at_ms)"
                    " VALUES (?, 'sealed', ?, ?, ?, ?, ?)",
                    (seq, batch.batch_hash, envelope, batch.size, batch.record_count, now_ms),
                )
                conn.executemany("UPDATE sheets SET batch_seq = ? WHERE id = ?", [(seq, i) for i, _ in chosen])
                conn.execute("UPDATE outbox_meta SET next_seq = next_seq + 1 WHERE id = 1")
            made.append(batch)
            log.info("outbox.batch.sealed", device_id=self.device_id, seq=seq, records=batch.record_count,
                     size=batch.size, batch_hash=batch.batch_hash.hex())
        return made

    def advance_next_seq(self, next_seq: int, *, now_ms: int, reason: str) -> int:
        """Move ``next_seq`` forward to ``next_seq`` (never back); returns the value now in force.

        For re-provisioning: the gateway already holds seqs of this device that
        this outbox never sealed, so new batches must start after them.
        Refused (``OutboxError``) while any batch is open: past the jump, a sync
        state covering the gateway's seqs would be taken as covering ours.
        ``reason`` is logged (``outbox.seq.advanced``); ids and numbers only.
        """
        if type(next_seq) is not int or next_seq < 1:
            raise ValueError("next_seq must be an integer >= 1")
        with self._tx() as conn:
            (current,) = conn.execute("SELECT next_seq FROM outbox_meta WHERE id = 1").fetchone()
            if next_seq <= current:
                return int(current)
            (open_batches,) = conn.execute("SELECT count(*) FROM batches WHERE state = 'sealed'").fetchone()
            if open_batches:
                raise OutboxError("cannot move the seq line while batches are open; deliver them first",
                                  device_id=self.device_id, open_batches=open_batches, next_seq=current)
            conn.execute("UPDATE outbox_meta SET next_seq = ? WHERE id = 1", (next_seq,))
        log.warning("outbox.seq.advanced", device_id=self.device_id, old_next_seq=current, next_seq=next_seq,
                    reason=reason, at_ms=now_ms)
        return next_seq

    # -- reading ----------------------------------------------------------------------------------------

    def pending_batches(self) -> list[StoredBatch]:
        """Sealed batches without receipt or coverage, ascending seq: what the roads must still carry."""
        rows = self._conn.execute(
            "SELECT seq, envelope, batch_hash, record_count, sealed_at_ms FROM batches"
            " WHERE state = 'sealed' ORDER BY seq"
        ).fetchall()
        return [StoredBatch(s, bytes(e), bytes(h), n, t) for s, e, h, n, t in rows]

    def receipt(self, seq: int) -> bytes | None:
        """The stored receipt bytes of ``seq`` (the tablet's receipt log), if it was receipted."""
        row = self._conn.execute("SELECT receipt FROM batches WHERE seq = ?", (seq,)).fetchone()
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def stats(self) -> OutboxStats:
        c = self._conn
        (next_seq,) = c.execute("SELECT next_seq FROM outbox_meta WHERE id = 1").fetchone()
        by_state = dict(c.execute("SELECT state, count(*) FROM batches GROUP BY state").fetchall())
        (pending,) = c.execute("SELECT count(*) FROM sheets WHERE batch_seq IS NULL").fetchone()
        (in_flight,) = c.execute(
            "SELECT count(*) FROM sheets JOIN batches ON batches.seq = sheets.batch_seq WHERE state = 'sealed'"
        ).fetchone()
        (delivered,) = c.execute(
            "SELECT count(*) FROM sheets JOIN batches ON batches.seq = sheets.batch_seq WHERE state != 'sealed'"
        ).fetchone()
        (bytes_sealed,) = c.execute("SELECT coalesce(sum(size), 0) FROM batches WHERE state = 'sealed'").fetchone()
        (last_rx,) = c.execute("SELECT max(received_at_ms) FROM batches").fetchone()
        (highest,) = c.execute("SELECT coalesce(max(highest_contiguous), 0) FROM sync_states").fetchone()
        return OutboxStats(
            device_id=self.device_id,
            next_seq=next_seq,
            sheets_pending=pending,
            sheets_in_flight=in_flight,
            sheets_delivered=delivered,
            batches_sealed=by_state.get("sealed", 0),
            batches_receipted=by_state.get("receipted", 0),
            batches_covered=by_state.get("covered", 0),
            bytes_sealed=bytes_sealed,
            last_received_at_ms=last_rx,
            highest_contiguous=highest,
        )

    # -- closing against proof --------------------------------------------------------------------------

    def _forget_plaintext(self, conn: sqlite3.Connection, seq: int) -> None:
        """Delete the sheets' contents of a batch whose proof the caller records in the same transaction."""
        conn.execute("UPDATE sheets SET body = NULL WHERE batch_seq = ?", (seq,))

    def mark_receipted(self, receipt: Receipt, *, now_ms: int) -> bool:
        """Close the batch a verified receipt names; True if it was open until now.

        Refused (``CoverageRefusedError``, nothing deleted) unless the receipt names
        this device, a seq this outbox sealed, the hash of the envelope it holds,
        and accounts for every sheet of the batch.
        """
        if not isinstance(receipt, Receipt):
            raise TypeError("mark_receipted takes a wire.Receipt from wire.parse_receipt")
        facts = {"device_id": self.device_id, "seq": receipt.seq}
        if receipt.device_id != self.device_id:
            self._refused("receipt names another device", **facts, receipt_device_id=receipt.device_id)
        with self._tx() as conn:
            row = conn.execute(
                "SELECT state, batch_hash, record_count FROM batches WHERE seq = ?", (receipt.seq,)
            ).fetchone()
            if row is None:
                self._refused("receipt names a seq this outbox never sealed", **facts)
            state, batch_hash, record_count = row
            if bytes(batch_hash) != receipt.batch_hash:
                self._refused("receipt names another batch hash", **facts, receipt_hash=receipt.batch_hash.hex())
            if receipt.sheets_accepted + receipt.sheets_quarantined != record_count:
                self._refused("receipt does not account for every sheet", **facts, records=record_count,
                              accepted=receipt.sheets_accepted, quarantined=receipt.sheets_quarantined)
            if state == "receipted":
                return False
            conn.execute(
                "UPDATE batches SET state = 'receipted', envelope = NULL, receipt = ?, road = ?, received_at_ms = ?,"
                " closed_at_ms = coalesce(closed_at_ms, ?) WHERE seq = ?",
                (receipt.raw, receipt.road, receipt.received_at_ms, now_ms, receipt.seq),
            )
            self._forget_plaintext(conn, receipt.seq)
        log.info("outbox.batch.receipted", device_id=self.device_id, seq=receipt.seq, road=receipt.road,
                 was_covered=state == "covered")
        self._purge_wal()
        return bool(state == "sealed")

    def apply_sync_state(self, state: SyncState, *, now_ms: int) -> Coverage:
        """Close every open batch a verified sync state covers (seq <= highest_contiguous)."""
        if not isinstance(state, SyncState):
            raise TypeError("apply_sync_state takes a wire.SyncState from wire.parse_sync_state")
        if state.device_id != self.device_id:
            self._refused("sync state names another device", device_id=self.device_id,
                          state_device_id=state.device_id)
        with self._tx() as conn:
            (next_seq,) = conn.execute("SELECT next_seq FROM outbox_meta WHERE id = 1").fetchone()
            if state.max_seq >= next_seq:
                self._refused("sync state names seqs this outbox never sealed", device_id=self.device_id,
                              max_seq=state.max_seq, next_seq=next_seq)
            rows = conn.execute(
                "SELECT seq, sealed_at_ms FROM batches WHERE state = 'sealed' AND seq <= ? ORDER BY seq",
                (state.highest_contiguous,),
            ).fetchall()
            covered = tuple(s for s, t in rows if t <= state.issued_at_ms)
            held = tuple(s for s, t in rows if t > state.issued_at_ms)
            (known,) = conn.execute("SELECT coalesce(max(highest_contiguous), 0) FROM sync_states").fetchone()
            state_id = None
            if covered or state.highest_contiguous > known:  # keep the proof, not every repeated state
                state_id = conn.execute(
                    "INSERT INTO sync_states (raw, issued_at_ms, highest_contiguous, applied_at_ms)"
                    " VALUES (?, ?, ?, ?)",
                    (state.raw, state.issued_at_ms, state.highest_contiguous, now_ms),
                ).lastrowid
            for seq in covered:
                conn.execute(
                    "UPDATE batches SET state = 'covered', envelope = NULL, covered_by = ?, closed_at_ms = ?"
                    " WHERE seq = ?",
                    (state_id, now_ms, seq),
                )
                self._forget_plaintext(conn, seq)
        log.info("outbox.sync_state.applied", device_id=self.device_id, covered=len(covered), held=len(held),
                 highest_contiguous=state.highest_contiguous)
        if covered:
            self._purge_wal()
        return Coverage(covered=covered, held=held)

    def _purge_wal(self) -> None:
        """Checkpoint and truncate the WAL: old page images there still hold deleted plaintext.

        ``secure_delete`` zeroes freed space in the database file; the WAL keeps
        earlier versions of pages until it is checkpointed and truncated. Best
        effort: with a concurrent reader the truncation waits for a later call.
        """
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _refused(self, message: str, **facts: Any) -> NoReturn:
        log.warning("outbox.coverage.refused", reason=message, **facts)
        raise CoverageRefusedError(message, **facts)
