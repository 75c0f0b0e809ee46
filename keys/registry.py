"""The device registry: tablets, ingest stations, their status history, published snapshot versions.

One SQLite file (WAL, ``synchronous=FULL``, born 0600: it holds worker
names), schema versioned in ``schema_migrations``. Every change is one
``BEGIN IMMEDIATE`` transaction and leaves a row in ``status_events`` (the
audit trail, with the completeness evidence of a return).

Tablet status machine (``TABLET_TRANSITIONS``)::

    issued --> returned | lost | revoked
    lost   --> returned | revoked          (a found tablet is handed back, never re-issued)
    returned --> revoked
    revoked: terminal

Station status machine: ``active --> revoked`` (terminal). A station row has a
role: ``usb`` (an ingest station) or ``web`` (a self-enumeration web service,
listed in snapshots under ``web_services``). Anything else is
``InvalidTransitionError``. Only ``issued`` tablets and ``active`` stations may
sign (enforced by consumers through the snapshot).

A tablet becomes ``returned`` only with proof that every seq it produced is
held by the gateway (a gateway-signed sync state without gaps whose
``highest_contiguous == max_seq == last_seq``), or with a signoff text that
explains the gap; both are recorded. Device and station ids share one
namespace, and a public key is enrolled at most once.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import structlog
from nacl.signing import SigningKey

from wire.keyids import key_id
from wire.snapshot import StationEntry, TabletEntry, WebServiceEntry, make_snapshot

from ._registry_schema import MIGRATIONS
from .completeness import completeness_problem
from .errors import (
    DuplicateDeviceError,
    IncompleteReturnError,
    InvalidRecordError,
    InvalidTransitionError,
    RegistryError,
    RegistrySchemaError,
    StorageError,
    UnknownDeviceError,
)
from .records import (
    CertificateKeyRecord,
    SnapshotRecord,
    StationRecord,
    StatusEvent,
    TabletRecord,
    certificate_key_from_row,
    check_id,
    check_text,
    station_from_row,
    tablet_from_row,
)

__all__ = ["STATION_TRANSITIONS", "TABLET_TRANSITIONS", "Registry"]

TABLET_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "issued": frozenset({"returned", "lost", "revoked"}),
    "lost": frozenset({"returned", "revoked"}),
    "returned": frozenset({"revoked"}),
    "revoked": frozenset(),
}
STATION_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "active": frozenset({"revoked"}),
    "revoked": frozenset(),
}

_log = structlog.get_logger("keys.registry")


class Registry:
    """The registry database at ``path`` (created, 0600, and migrated on open)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.close(fd)
        except FileExistsError:
            pass
        except OSError as e:
            raise StorageError("cannot create registry database", path=str(self.path), error=e.strerror) from e
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as e:
            raise RegistryError("registry database unusable", path=str(self.path), error=str(e)) from e

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise RegistryError("registry database busy or unusable", error=str(e)) from e
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._db.execute("ROLLBACK")
            raise RegistryError("registry commit failed", error=str(e)) from e

    def _migrate(self) -> None:
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
        )
        with self._tx() as db:
            current = db.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]
            if current > len(MIGRATIONS):
                raise RegistrySchemaError(
                    "registry was written by a newer version", schema=current, known=len(MIGRATIONS)
                )
            for version, (name, script) in enumerate(MIGRATIONS, start=1):
                if version > current:
                    for statement in script:
                        db.execute(statement)
                    db.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name))

    def schema_version(self) -> int:
        return int(self._db.execute("SELECT max(version) FROM schema_migrations").fetchone()[0])

    # ---- enrollment -------------------------------------------------------------------------

    def _check_new(self, db: sqlite3.Connection, subject_id: str, public_key: bytes) -> None:
        if len(public_key) != 32:
            raise InvalidRecordError("public key must be 32 bytes", id=subject_id)
        taken = db.execute(
            "SELECT 1 FROM tablets WHERE device_id = ? UNION ALL SELECT 1 FROM stations WHERE station_id = ?",
            (subject_id, subject_id),
        ).fetchone()
        if taken:
            raise DuplicateDeviceError("id already enrolled", id=subject_id)
        key_taken = db.execute(
            "SELECT 1 FROM tablets WHERE public_key = ? UNION ALL SELECT 1 FROM stations WHERE public_key = ?",
            (public_key.hex(), public_key.hex()),
        ).fetchone()
        if key_taken:
            raise DuplicateDeviceError("public key already enrolled", id=subject_id, key_id=key_id(public_key).hex())

    def enroll_tablet(
        self,
        *,
        device_id: str,
        public_key: bytes,
        usb_serial: str,
        institution: str,
        worker_id: str,
        now_ms: int,
        worker_name: str | None = None,
        act_no: str | None = None,
    ) -> TabletRecord:
        """Register a tablet as ``issued`` to ``worker_id`` under acceptance-transfer act ``act_no``."""
        check_id(device_id, "device_id")
        usb_serial = check_text(usb_serial, "usb_serial", 128)
        institution = check_text(institution, "institution", 64)
        worker_id = check_text(worker_id, "worker_id", 64)
        worker_name = None if worker_name is None else check_text(worker_name, "worker_name", 256)
        act_no = None if act_no is None else check_text(act_no, "act_no", 64)
        with self._tx() as db:
            self._check_new(db, device_id, public_key)
            db.execute(
                "INSERT INTO tablets (device_id, public_key, key_id, usb_serial, institution, worker_id, worker_name,"
                " act_no, issued_at_ms, status, status_changed_at_ms) VALUES (?,?,?,?,?,?,?,?,?,'issued',?)",
                (device_id, public_key.hex(), key_id(public_key).hex(), usb_serial, institution, worker_id,
                 worker_name, act_no, now_ms, now_ms),
            )
            self._event(
                db, device_id, kind="tablet", old=None, new="issued", at_ms=now_ms, reason=act_no, evidence=None
            )
        _log.info("registry.tablet.enrolled", device_id=device_id, key_id=key_id(public_key).hex())
        return self.tablet(device_id)

    def enroll_station(
        self, *, station_id: str, public_key: bytes, now_ms: int, location: str | None = None, role: str = "usb"
    ) -> StationRecord:
        check_id(station_id, "station_id")
        if role not in ("usb", "web"):
            raise InvalidRecordError("station role must be usb or web", station_id=station_id)
        location = None if location is None else check_text(location, "location", 256)
        with self._tx() as db:
            self._check_new(db, station_id, public_key)
            db.execute(
                "INSERT INTO stations (station_id, public_key, key_id, location, enrolled_at_ms, status,"
                " status_changed_at_ms, role) VALUES (?,?,?,?,?,'active',?,?)",
                (station_id, public_key.hex(), key_id(public_key).hex(), location, now_ms, now_ms, role),
            )
            self._event(
                db, station_id, kind="station", old=None, new="active", at_ms=now_ms, reason=None, evidence=None
            )
        _log.info("registry.station.enrolled", station_id=station_id, role=role, key_id=key_id(public_key).hex())
        return self.station(station_id)

    # ---- certificate keys (docs/protocol.md 7.4) ----------------------------------------------

    def add_certificate_key(self, *, issuer: str, census: str, public_key: bytes, now_ms: int) -> CertificateKeyRecord:
        """Record a new ``active`` certificate key; the issuer's previous active key becomes ``retired``."""
        check_id(issuer, "issuer")
        kid = key_id(public_key).hex()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM certificate_keys WHERE public_key = ?", (public_key.hex(),)).fetchone():
                raise DuplicateDeviceError("certificate key already recorded", key_id=kid)
            db.execute(
                "UPDATE certificate_keys SET status = 'retired', status_changed_at_ms = ?, reason = 'rotated'"
                " WHERE issuer = ? AND status = 'active'",
                (now_ms, issuer),
            )
            db.execute(
                "INSERT INTO certificate_keys (key_id, public_key, issuer, census, created_at_ms, status,"
                " status_changed_at_ms) VALUES (?,?,?,?,?,'active',?)",
                (kid, public_key.hex(), issuer, census, now_ms, now_ms),
            )
        _log.info("registry.certificate_key.added", issuer=issuer, key_id=kid)
        return self.certificate_key(kid)

    def revoke_certificate_key(self, kid: str, *, reason: str, now_ms: int) -> CertificateKeyRecord:
        """Withdraw a certificate key: the next snapshot lists it and its certificates are refused."""
        reason = check_text(reason, "reason", 1000)
        with self._tx() as db:
            row = db.execute("SELECT status FROM certificate_keys WHERE key_id = ?", (kid,)).fetchone()
            if row is None:
                raise UnknownDeviceError("no such certificate key", key_id=kid)
            if row["status"] == "revoked":
                raise InvalidTransitionError("certificate key is already revoked", key_id=kid)
            db.execute(
                "UPDATE certificate_keys SET status = 'revoked', status_changed_at_ms = ?, reason = ? WHERE key_id = ?",
                (now_ms, reason, kid),
            )
        _log.info("registry.certificate_key.revoked", key_id=kid)
        return self.certificate_key(kid)

    def certificate_key(self, kid: str) -> CertificateKeyRecord:
        row = self._db.execute("SELECT * FROM certificate_keys WHERE key_id = ?", (kid,)).fetchone()
        if row is None:
            raise UnknownDeviceError("no such certificate key", key_id=kid)
        return certificate_key_from_row(row)

    def list_certificate_keys(self) -> list[CertificateKeyRecord]:
        rows = self._db.execute("SELECT * FROM certificate_keys ORDER BY issuer, created_at_ms")
        return [certificate_key_from_row(r) for r in rows]

    # ---- status changes ---------------------------------------------------------------------

    @staticmethod
    def _event(
        db: sqlite3.Connection, subject: str, *, kind: str, old: str | None, new: str, at_ms: int,
        reason: str | None, evidence: bytes | None,
    ) -> None:
        db.execute(
            "INSERT INTO status_events (subject_id, subject_kind, from_status, to_status, at_ms, reason, evidence)"
            " VALUES (?,?,?,?,?,?,?)",
            (subject, kind, old, new, at_ms, reason, evidence),
        )

    def _set_tablet_status(
        self, device_id: str, new: str, *, now_ms: int, reason: str, evidence: bytes | None = None
    ) -> TabletRecord:
        with self._tx() as db:
            row = db.execute("SELECT status FROM tablets WHERE device_id = ?", (device_id,)).fetchone()
            if row is None:
                raise UnknownDeviceError("no such tablet", device_id=device_id)
            old = str(row["status"])
            if new not in TABLET_TRANSITIONS[old]:
                raise InvalidTransitionError(f"tablet cannot go from {old} to {new}", device_id=device_id)
            returned_at = now_ms if new == "returned" else None
            db.execute(
                "UPDATE tablets SET status = ?, status_changed_at_ms = ?, reason = ?,"
                " returned_at_ms = coalesce(?, returned_at_ms) WHERE device_id = ?",
                (new, now_ms, reason, returned_at, device_id),
            )
            self._event(db, device_id, kind="tablet", old=old, new=new, at_ms=now_ms, reason=reason, evidence=evidence)
        _log.info("registry.tablet.status_changed", device_id=device_id, from_status=old, to_status=new)
        return self.tablet(device_id)

    def revoke(self, subject_id: str, *, reason: str, now_ms: int) -> TabletRecord | StationRecord:
        """Revoke a tablet or a station (looked up in that order); its key stops being trusted."""
        reason = check_text(reason, "reason", 1000)
        if self._db.execute("SELECT 1 FROM tablets WHERE device_id = ?", (subject_id,)).fetchone():
            return self._set_tablet_status(subject_id, "revoked", now_ms=now_ms, reason=reason)
        with self._tx() as db:
            row = db.execute("SELECT status FROM stations WHERE station_id = ?", (subject_id,)).fetchone()
            if row is None:
                raise UnknownDeviceError("no such tablet or station", id=subject_id)
            old = str(row["status"])
            if "revoked" not in STATION_TRANSITIONS[old]:
                raise InvalidTransitionError(f"station cannot go from {old} to revoked", station_id=subject_id)
            db.execute(
                "UPDATE stations SET status = 'revoked', status_changed_at_ms = ?, reason = ? WHERE station_id = ?",
                (now_ms, reason, subject_id),
            )
            self._event(
                db, subject_id, kind="station", old=old, new="revoked", at_ms=now_ms, reason=reason, evidence=None
            )
        _log.info("registry.station.revoked", station_id=subject_id)
        return self.station(subject_id)

    def mark_lost(self, device_id: str, *, reason: str, now_ms: int) -> TabletRecord:
        return self._set_tablet_status(device_id, "lost", now_ms=now_ms, reason=check_text(reason, "reason", 1000))

    def mark_returned(
        self,
        device_id: str,
        *,
        now_ms: int,
        gateway_keys: Mapping[bytes, bytes] | None = None,
        sync_state: bytes | None = None,
        last_seq: int | None = None,
        signoff: str | None = None,
    ) -> TabletRecord:
        """Mark a tablet handed back, given proof that its data is complete or a signed-off gap.

        ``sync_state`` is a gateway-signed sync-state document (verified against
        ``gateway_keys``: key id -> public key) and ``last_seq`` the last seq the
        tablet reports it produced (0 if none). Without a complete sync state a
        non-empty ``signoff`` explaining the gap is required. ``IncompleteReturnError``
        otherwise; the sync state bytes are kept in the audit trail.
        """
        tablet = self.tablet(device_id)
        if "returned" not in TABLET_TRANSITIONS[tablet.status]:
            raise InvalidTransitionError(f"tablet cannot go from {tablet.status} to returned", device_id=device_id)
        signoff = None if signoff is None else check_text(signoff, "signoff", 1000)
        problem = completeness_problem(device_id, gateway_keys or {}, sync_state, last_seq)
        if problem is not None and signoff is None:
            raise IncompleteReturnError(f"cannot mark returned: {problem}; give a signoff to accept the gap",
                                        device_id=device_id)
        reason = "complete: sync state verified" if problem is None else f"gap signed off: {signoff}"
        if problem is None and signoff is not None:
            reason = f"complete: sync state verified; note: {signoff}"
        return self._set_tablet_status(device_id, "returned", now_ms=now_ms, reason=reason, evidence=sync_state)

    # ---- queries ----------------------------------------------------------------------------

    def tablet(self, device_id: str) -> TabletRecord:
        row = self._db.execute("SELECT * FROM tablets WHERE device_id = ?", (device_id,)).fetchone()
        if row is None:
            raise UnknownDeviceError("no such tablet", device_id=device_id)
        return tablet_from_row(row)

    def station(self, station_id: str) -> StationRecord:
        row = self._db.execute("SELECT * FROM stations WHERE station_id = ?", (station_id,)).fetchone()
        if row is None:
            raise UnknownDeviceError("no such station", station_id=station_id)
        return station_from_row(row)

    def list_tablets(self) -> list[TabletRecord]:
        return [tablet_from_row(r) for r in self._db.execute("SELECT * FROM tablets ORDER BY device_id")]

    def list_stations(self) -> list[StationRecord]:
        return [station_from_row(r) for r in self._db.execute("SELECT * FROM stations ORDER BY station_id")]

    def list_snapshots(self) -> list[SnapshotRecord]:
        rows = self._db.execute("SELECT * FROM snapshot_versions ORDER BY version")
        return [SnapshotRecord(r["version"], r["published_at_ms"], r["expires_at_ms"], r["sha256"]) for r in rows]

    def events(self, subject_id: str | None = None) -> list[StatusEvent]:
        sql = "SELECT * FROM status_events"
        args: tuple[str, ...] = ()
        if subject_id is not None:
            sql, args = sql + " WHERE subject_id = ?", (subject_id,)
        return [
            StatusEvent(r["id"], r["subject_id"], r["subject_kind"], r["from_status"], r["to_status"], r["at_ms"],
                        r["reason"], r["evidence"])
            for r in self._db.execute(sql + " ORDER BY id", args)
        ]

    def latest_version(self) -> int:
        return int(self._db.execute("SELECT coalesce(max(version), 0) FROM snapshot_versions").fetchone()[0])

    # ---- snapshots --------------------------------------------------------------------------

    def build_snapshot(
        self,
        *,
        root_key: SigningKey,
        data_public_key: bytes,
        gateway_public_keys: list[bytes],
        now_ms: int,
        validity_ms: int,
    ) -> bytes:
        """Sign a snapshot of the current registry with a version above every one published before.

        The version is recorded in the same transaction, so two publications never
        share a version. ``worker_name`` and ``act_no`` stay out of the snapshot.
        """
        if validity_ms <= 0:
            raise InvalidRecordError("snapshot validity must be positive", validity_ms=validity_ms)
        with self._tx() as db:
            version = int(db.execute("SELECT coalesce(max(version), 0) FROM snapshot_versions").fetchone()[0]) + 1
            tablets = [
                TabletEntry(r["device_id"], bytes.fromhex(r["key_id"]), bytes.fromhex(r["public_key"]),
                            r["usb_serial"], r["institution"], r["worker_id"], r["status"], r["issued_at_ms"],
                            r["returned_at_ms"])
                for r in db.execute("SELECT * FROM tablets")
            ]
            stations = [
                StationEntry(r["station_id"], bytes.fromhex(r["key_id"]), bytes.fromhex(r["public_key"]), r["status"])
                for r in db.execute("SELECT * FROM stations WHERE role = 'usb'")
            ]
            web_services = [
                WebServiceEntry(r["station_id"], bytes.fromhex(r["key_id"]), bytes.fromhex(r["public_key"]),
                                r["status"])
                for r in db.execute("SELECT * FROM stations WHERE role = 'web'")
            ]
            revoked_certificate_keys = [
                bytes.fromhex(r["key_id"])
                for r in db.execute("SELECT key_id FROM certificate_keys WHERE status = 'revoked'")
            ]
            data = make_snapshot(
                version=version, issued_at_ms=now_ms, expires_at_ms=now_ms + validity_ms,
                data_public_key=data_public_key, gateway_public_keys=gateway_public_keys,
                tablets=tablets, stations=stations, root_key=root_key, web_services=web_services,
                revoked_certificate_keys=revoked_certificate_keys,
            )
            db.execute(
                "INSERT INTO snapshot_versions (version, published_at_ms, expires_at_ms, sha256) VALUES (?,?,?,?)",
                (version, now_ms, now_ms + validity_ms, hashlib.sha256(data).hexdigest()),
            )
        _log.info("registry.snapshot.built", version=version, tablets=len(tablets), stations=len(stations))
        return data
