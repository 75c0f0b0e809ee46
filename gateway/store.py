"""The census store interface: what the gateway needs from a database, engine-neutral.

Two engines implement it: ``store_sqlite`` (embedded default, WAL) and
``store_postgres``, both thin adapters over ``store_commit`` (one group
committer) and ``store_rules`` (one definition of every rule below). Guarantees every engine gives:

* ``ingest`` is atomic: the request nonce, the batch (original envelope and
  receipt), its sheets and quarantined sheets are committed together, durably
  (fsync'd), before it returns ``Stored``. Commits are grouped across
  concurrent callers.
* (device_id, seq) is unique and batch_hash is unique: the same batch again is
  ``Duplicate`` with the stored receipt; other bytes under the same
  (device_id, seq) are ``Conflict`` and nothing stored changes.
* a (key_id, nonce) pair is accepted once; a second use is ``ReplayError``.
* persons are counted once: every stored institution sheet names a list entry
  (institution code, ``respondent_list_entry``); the first sheet stored for
  an entry counts it (UNIQUE (institution_code, entry_id) decides, also
  between instances), and every later one is stored too and opens a
  ``same-entry`` review case. A sheet whose person key
  (``gateway.person_key``) matches an earlier sheet of another entry opens a
  ``possible-duplicate`` case. Nothing is merged or dropped.
* the registry snapshot version only grows; ``watch_registry`` calls its
  callback when another process may have changed it (PostgreSQL NOTIFY; the
  SQLite engine has one process per file and returns at once).

Engine failures that are not the client's fault raise ``StoreUnavailable``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "BatchRecord",
    "CensusStore",
    "Conflict",
    "CustodyItem",
    "DeviceSeqs",
    "Duplicate",
    "IngestItem",
    "IngestOutcome",
    "NotDurableError",
    "NonceUse",
    "PersonRecord",
    "QuarantinedSheet",
    "ReplayError",
    "SecurityEvent",
    "Stored",
    "StoreError",
    "StoreUnavailable",
    "StoredSheet",
]


class StoreError(Exception):
    """Base of store failures."""


class StoreUnavailable(StoreError):
    """The engine cannot take the operation now (disk full, I/O error, connection lost)."""


class NotDurableError(StoreError):
    """The database is not in its durable mode; the gateway refuses to start on it."""


class ReplayError(StoreError):
    """The (key id, nonce) pair was used before."""


@dataclass(frozen=True, slots=True)
class NonceUse:
    key_id: bytes
    nonce: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class StoredSheet:
    index: int
    sheet_id: str | None
    institution_code: str | None
    respondent_list_entry: str | None
    body_json: str
    # person-level counting (docs/census-sheet.md section 6); None for a household sheet
    person_key: str | None = None
    source: str | None = None
    region: str | None = None


@dataclass(frozen=True, slots=True)
class QuarantinedSheet:
    index: int
    reason: str
    body_json: str


@dataclass(frozen=True, slots=True)
class IngestItem:
    device_id: str
    seq: int
    batch_hash: bytes
    envelope: bytes
    sealed_at_ms: int
    request_created_s: int
    received_at_ms: int
    road: str
    signer_key_id: bytes
    schema: str
    receipt: bytes
    sheets: tuple[StoredSheet, ...]
    quarantined: tuple[QuarantinedSheet, ...]
    nonce: NonceUse


@dataclass(frozen=True, slots=True)
class Stored:
    receipt: bytes


@dataclass(frozen=True, slots=True)
class Duplicate:
    receipt: bytes


@dataclass(frozen=True, slots=True)
class Conflict:
    stored_hash: bytes


IngestOutcome = Stored | Duplicate | Conflict


@dataclass(frozen=True, slots=True)
class BatchRecord:
    device_id: str
    seq: int
    batch_hash: bytes
    receipt: bytes
    received_at_ms: int
    road: str


@dataclass(frozen=True, slots=True)
class DeviceSeqs:
    device_id: str
    seqs: tuple[int, ...]
    last_sync_ms: int | None


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    at_ms: int
    kind: str
    device_id: str | None = None
    seq: int | None = None
    key_id: str | None = None
    detail: dict[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CustodyItem:
    station_id: str
    device_id: str
    pulled_at_ms: int
    received_at_ms: int
    record: bytes
    batch_count: int
    nonce: NonceUse


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """A counted list entry: the sheet that counts it (the first stored) and how many more name it."""

    entry_id: str
    road: str
    device_id: str
    received_at_ms: int
    source: str
    more_sheets: int


class CensusStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ingest(self, item: IngestItem) -> IngestOutcome: ...

    async def find_batch(self, device_id: str, seq: int) -> BatchRecord | None: ...

    async def use_nonce(self, nonce: NonceUse) -> None: ...

    async def device_seqs(self, device_id: str) -> DeviceSeqs: ...

    async def record_security_event(self, event: SecurityEvent) -> None: ...

    async def current_snapshot(self) -> bytes | None: ...

    async def save_snapshot(self, version: int, snapshot: bytes) -> None: ...

    async def snapshot_version(self) -> int | None: ...

    async def watch_registry(self, changed: Callable[[], None]) -> None: ...

    async def add_custody(self, item: CustodyItem) -> None: ...

    async def purge_nonces(self, now_ms: int) -> int: ...

    async def counts(self) -> dict[str, int]: ...

    async def institution_persons(self, institution_code: str) -> list[PersonRecord]:
        """The counted entries of one institution, in entry order."""
        ...
