"""The web service's one SQLite file: access-code hashes, encrypted drafts and contacts, submissions, counters.

Nothing in it is readable personal data: codes are keyed hashes, drafts are
sealed under a key derived from the code (the service never holds it at
rest), and a submission row holds ids, the sealed envelope's file name and
the receipt; a reminder contact is sealed under ``contacts.key`` and goes
with the submission or the close of the window. ``secure_delete`` overwrites
freed pages, so a deleted draft leaves no ciphertext behind either. The file
is born 0600.

Submission, in one ``BEGIN IMMEDIATE`` transaction: the next seq is taken,
the sealed envelope is written to the spool (temp, fsync, rename, fsync dir),
the submission row is inserted and the draft and contact deleted; only then
does the respondent see "accepted". A crash before the commit leaves at most an
orphan spool file, removed at start (it was never sent).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wire import AccessCodeChange

from .errors import OperatorError

__all__ = ["CodeRow", "SelfenumStore", "Submission", "pending_contacts", "read_pending_contacts"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS codes (
        code_hash TEXT PRIMARY KEY,
        entry_id TEXT NOT NULL,
        institution_code TEXT NOT NULL,
        institution_kind TEXT NOT NULL,
        worker_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
        issued_at_ms INTEGER NOT NULL,
        revoked_at_ms INTEGER,
        members TEXT
    ) STRICT""",
    "CREATE UNIQUE INDEX IF NOT EXISTS codes_one_active ON codes (entry_id) WHERE status = 'active'",
    """CREATE TABLE IF NOT EXISTS drafts (
        code_hash TEXT PRIMARY KEY,
        sealed BLOB NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    ) STRICT""",
    """CREATE TABLE IF NOT EXISTS submissions (
        entry_id TEXT PRIMARY KEY,
        code_hash TEXT NOT NULL,
        seq INTEGER NOT NULL UNIQUE,
        batch_hash TEXT NOT NULL,
        accepted_at_ms INTEGER NOT NULL,
        receipt BLOB,
        received_at_ms INTEGER,
        state TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'refused')),
        refusal TEXT
    ) STRICT""",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT",
    """CREATE TABLE IF NOT EXISTS contacts (
        code_hash TEXT PRIMARY KEY,
        entry_id TEXT NOT NULL,
        sealed BLOB NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    ) STRICT""",
)


# SQL: code ``c`` opens an entry (itself, or a household member) that has no submission yet
_UNSUBMITTED_MEMBER = ("EXISTS (SELECT 1 FROM json_each(COALESCE(c.members, json_array(c.entry_id))) m"
                       " WHERE NOT EXISTS (SELECT 1 FROM submissions s WHERE s.entry_id = m.value))")


@dataclass(frozen=True, slots=True)
class CodeRow:
    code_hash: str
    entry_id: str
    institution_code: str
    institution_kind: str
    worker_id: str
    status: str
    members: tuple[str, ...] = ()  # a household's code: every member's entry (entry_id first)

    @property
    def entries(self) -> tuple[str, ...]:
        return self.members or (self.entry_id,)


@dataclass(frozen=True, slots=True)
class Submission:
    entry_id: str
    seq: int
    batch_hash: str
    accepted_at_ms: int
    received_at_ms: int | None
    receipt: bytes | None
    state: str


class SelfenumStore:
    """One connection, used from the event loop thread only (every call is short)."""

    def __init__(self, path: Path, spool_dir: Path, *, sweep_spool: bool = True) -> None:
        """``sweep_spool``: remove orphan spool files (the service at start). The CLI, which may run beside the
        service, passes False: a spool file written inside an open submission is not an orphan."""
        self.path = path
        self.spool_dir = spool_dir
        spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            for statement in _SCHEMA:
                self._db.execute(statement)
            if "members" not in {r[1] for r in self._db.execute("PRAGMA table_info(codes)")}:
                self._db.execute("ALTER TABLE codes ADD COLUMN members TEXT")  # a database made before households
        except (OSError, sqlite3.Error) as e:
            raise OperatorError("cannot open the self-enumeration database", path=str(path)) from e
        if sweep_spool:
            self._remove_orphans()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def spool_path(self, seq: int) -> Path:
        return self.spool_dir / f"{seq:012d}.sqb"

    def _remove_orphans(self) -> None:
        known = {self.spool_path(r[0]).name for r in self._db.execute("SELECT seq FROM submissions")}
        for p in self.spool_dir.iterdir():
            if p.name not in known:
                p.unlink()

    # ---- codes ------------------------------------------------------------------------------

    def add_code(self, row: CodeRow, *, now_ms: int, replace: bool) -> None:
        """Store a new active code for its entry; with ``replace`` the entry's active code is revoked first."""
        with self._tx() as db:
            if replace:
                for entry in row.entries:
                    db.execute("UPDATE codes SET status = 'revoked', revoked_at_ms = ? WHERE status = 'active' AND"
                               " (entry_id = ? OR EXISTS (SELECT 1 FROM json_each(members) m WHERE m.value = ?))",
                               (now_ms, entry, entry))
            try:
                db.execute("INSERT INTO codes (code_hash, entry_id, institution_code, institution_kind, worker_id,"
                           " status, issued_at_ms, members) VALUES (?,?,?,?,?,'active',?,?)",
                           (row.code_hash, row.entry_id, row.institution_code, row.institution_kind, row.worker_id,
                            now_ms, json.dumps(row.members) if row.members else None))
            except sqlite3.IntegrityError as e:
                raise OperatorError("entry already has an active code (use reissue)", entry_id=row.entry_id) from e

    def revoke_entry(self, entry_id: str, *, now_ms: int) -> int:
        """Revoke the active code opening the entry (a household member's: the household's code)."""
        with self._tx() as db:
            cur = db.execute("UPDATE codes SET status = 'revoked', revoked_at_ms = ? WHERE status = 'active' AND"
                             " (entry_id = ? OR EXISTS (SELECT 1 FROM json_each(members) m WHERE m.value = ?))",
                             (now_ms, entry_id, entry_id))
            return cur.rowcount

    def covering_code(self, entry_id: str) -> CodeRow | None:
        """The active code that opens the entry, if any."""
        r = self._db.execute("SELECT code_hash FROM codes WHERE status = 'active' AND (entry_id = ? OR EXISTS"
                             " (SELECT 1 FROM json_each(members) m WHERE m.value = ?))",
                             (entry_id, entry_id)).fetchone()
        return None if r is None else self.code(r[0])

    def code(self, code_hash: str) -> CodeRow | None:
        r = self._db.execute("SELECT code_hash, entry_id, institution_code, institution_kind, worker_id, status,"
                             " members FROM codes WHERE code_hash = ?", (code_hash,)).fetchone()
        if r is None:
            return None
        return CodeRow(code_hash=r[0], entry_id=r[1], institution_code=r[2], institution_kind=r[3], worker_id=r[4],
                       status=r[5], members=tuple(json.loads(r[6])) if r[6] else ())

    def codes_version(self) -> int:
        """The last access-code change version applied from the gateway (0: none yet)."""
        row = self._db.execute("SELECT value FROM counters WHERE name = 'codes_version'").fetchone()
        return int(row[0]) if row else 0

    def apply_code_changes(self, since: int, changes: Sequence[AccessCodeChange], *, now_ms: int) -> int:
        """Apply the gateway's changes after ``since`` in order, in one transaction; returns the version now held.

        Refused (``OperatorError``, nothing applied) unless ``since`` is the version held: a document answers
        one request only. An ``active`` change makes its hash the entry's one active code (any other active code
        of the entry is revoked first); a ``revoked`` change revokes its hash.
        """
        with self._tx() as db:
            if self.codes_version() != since:
                raise OperatorError("access-code changes do not follow the version held", since=since)
            held = since
            for c in changes:
                if c.status == "active":
                    for member in c.entries:  # the code now opens these entries, and no other code does
                        db.execute("UPDATE codes SET status = 'revoked', revoked_at_ms = ? WHERE status = 'active'"
                                   " AND code_hash != ? AND (entry_id = ? OR EXISTS (SELECT 1 FROM json_each(members)"
                                   " m WHERE m.value = ?))", (now_ms, c.code_hash, member, member))
                    db.execute("INSERT INTO codes (code_hash, entry_id, institution_code, institution_kind, worker_id,"
                               " status, issued_at_ms, members) VALUES (?,?,?,?,?,'active',?,?) ON CONFLICT (code_hash)"
                               " DO UPDATE SET status = 'active', revoked_at_ms = NULL"
                               " WHERE entry_id = excluded.entry_id",
                               (c.code_hash, c.entry_id, c.institution_code, c.institution_kind, c.worker_id, now_ms,
                                json.dumps(list(c.members)) if c.members else None))
                else:
                    db.execute("UPDATE codes SET status = 'revoked', revoked_at_ms = ? WHERE code_hash = ?"
                               " AND status = 'active'", (now_ms, c.code_hash))
                held = c.version
            db.execute("INSERT INTO counters VALUES ('codes_version', ?) ON CONFLICT (name) DO UPDATE SET"
                       " value = excluded.value", (held,))
        return held

    def entries_with_codes(self) -> set[str]:
        """Every entry an active code opens (its own, or as a household member)."""
        out: set[str] = set()
        for entry_id, members in self._db.execute("SELECT entry_id, members FROM codes WHERE status = 'active'"):
            out.update(json.loads(members) if members else [entry_id])
        return out

    # ---- drafts -----------------------------------------------------------------------------

    def draft(self, code_hash: str, *, now_ms: int) -> bytes | None:
        r = self._db.execute("SELECT sealed FROM drafts WHERE code_hash = ? AND expires_at_ms > ?",
                             (code_hash, now_ms)).fetchone()
        return None if r is None else bytes(r[0])

    def save_draft(self, code_hash: str, sealed: bytes, *, now_ms: int, expires_at_ms: int) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO drafts VALUES (?,?,?,?) ON CONFLICT (code_hash) DO UPDATE SET"
                       " sealed = excluded.sealed, updated_at_ms = excluded.updated_at_ms,"
                       " expires_at_ms = excluded.expires_at_ms", (code_hash, sealed, now_ms, expires_at_ms))

    def purge_expired_drafts(self, *, now_ms: int) -> int:
        """Drafts and reminder contacts whose window has closed."""
        with self._tx() as db:
            db.execute("DELETE FROM contacts WHERE expires_at_ms <= ?", (now_ms,))
            return db.execute("DELETE FROM drafts WHERE expires_at_ms <= ?", (now_ms,)).rowcount

    # ---- reminder contacts ------------------------------------------------------------------

    def save_contact(self, code_hash: str, entry_id: str, sealed: bytes, *, now_ms: int, expires_at_ms: int) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO contacts VALUES (?,?,?,?,?) ON CONFLICT (code_hash) DO UPDATE SET"
                       " sealed = excluded.sealed, updated_at_ms = excluded.updated_at_ms,"
                       " expires_at_ms = excluded.expires_at_ms", (code_hash, entry_id, sealed, now_ms, expires_at_ms))

    def delete_contact(self, code_hash: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM contacts WHERE code_hash = ?", (code_hash,))

    def has_contact(self, code_hash: str) -> bool:
        return self._db.execute("SELECT 1 FROM contacts WHERE code_hash = ?", (code_hash,)).fetchone() is not None

    def pending_contacts(self, *, now_ms: int) -> list[tuple[str, str, bytes]]:
        """(entry_id, institution_code, sealed contact) of every respondent who has not submitted yet."""
        return pending_contacts(self._db, now_ms=now_ms)


    # ---- submissions ------------------------------------------------------------------------

    def submission(self, entry_id: str) -> Submission | None:
        r = self._db.execute("SELECT entry_id, seq, batch_hash, accepted_at_ms, received_at_ms, receipt, state"
                             " FROM submissions WHERE entry_id = ?", (entry_id,)).fetchone()
        return None if r is None else Submission(r[0], r[1], r[2], r[3], r[4], None if r[5] is None else bytes(r[5]),
                                                 r[6])

    def submit(self, entry_id: str, code_hash: str, *, now_ms: int,
               seal: Callable[[int], tuple[bytes, str]], write: Callable[[Path, bytes], None],
               draft_id: str | None = None) -> Submission:
        """Take the next seq, seal with it, spool the envelope durably, record it, delete the draft: one commit.

        ``draft_id``: the draft's key (a household member's is not the code hash alone). The reminder contact
        goes once every entry the code opens is submitted. A second call for the same entry returns the first
        submission unchanged.
        """
        with self._tx() as db:
            existing = self.submission(entry_id)
            if existing is not None:
                return existing
            row = db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
            seq = (row[0] if row else 0) + 1
            db.execute("INSERT INTO counters VALUES ('seq', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                       (seq,))
            envelope, batch_hash = seal(seq)
            write(self.spool_path(seq), envelope)
            db.execute("INSERT INTO submissions (entry_id, code_hash, seq, batch_hash, accepted_at_ms, state)"
                       " VALUES (?,?,?,?,?,'queued')", (entry_id, code_hash, seq, batch_hash, now_ms))
            db.execute("DELETE FROM drafts WHERE code_hash = ?", (draft_id or code_hash,))
            db.execute("DELETE FROM contacts WHERE code_hash = ? AND NOT EXISTS (SELECT 1 FROM codes c WHERE"  # noqa: S608 - constant fragment
                       " c.code_hash = contacts.code_hash AND " + _UNSUBMITTED_MEMBER + ")", (code_hash,))
        done = self.submission(entry_id)
        assert done is not None
        return done

    def queued(self, limit: int = 100) -> list[Submission]:
        rows = self._db.execute("SELECT entry_id FROM submissions WHERE state = 'queued' ORDER BY seq LIMIT ?",
                                (limit,)).fetchall()
        return [s for (e,) in rows if (s := self.submission(e)) is not None]

    def delivered(self, entry_id: str, *, receipt: bytes, received_at_ms: int) -> None:
        """Record the verified receipt; the spool file goes only after this commit."""
        sub = self.submission(entry_id)
        with self._tx() as db:
            db.execute("UPDATE submissions SET state = 'delivered', receipt = ?, received_at_ms = ?"
                       " WHERE entry_id = ? AND state = 'queued'", (receipt, received_at_ms, entry_id))
        if sub is not None:
            self.spool_path(sub.seq).unlink(missing_ok=True)

    def refused(self, entry_id: str, reason: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE submissions SET state = 'refused', refusal = ? WHERE entry_id = ? AND state = 'queued'",
                       (reason[:200], entry_id))

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("queued", "delivered", "refused"), 0)
        for state, n in self._db.execute("SELECT state, count(*) FROM submissions GROUP BY state"):
            out[state] = n
        out["codes_active"] = self._db.execute("SELECT count(*) FROM codes WHERE status = 'active'").fetchone()[0]
        out["drafts"] = self._db.execute("SELECT count(*) FROM drafts").fetchone()[0]
        out["contacts"] = self._db.execute("SELECT count(*) FROM contacts").fetchone()[0]
        out["codes_version"] = self.codes_version()
        return out


def read_pending_contacts(path: Path, *, now_ms: int) -> list[tuple[str, str, bytes]]:
    """``pending_contacts`` from a read-only connection: safe beside the running service (changes nothing)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise OperatorError("cannot open the self-enumeration database", path=str(path)) from e
    try:
        db.execute("PRAGMA busy_timeout=5000")
        return pending_contacts(db, now_ms=now_ms)
    except sqlite3.Error as e:
        raise OperatorError("cannot read the self-enumeration database", path=str(path)) from e
    finally:
        db.close()


def pending_contacts(db: sqlite3.Connection, *, now_ms: int) -> list[tuple[str, str, bytes]]:
    sql = ("SELECT k.entry_id, c.institution_code, k.sealed FROM contacts k JOIN codes c ON c.code_hash = k.code_hash"  # noqa: S608
           " WHERE k.expires_at_ms > ? AND c.status = 'active' AND " + _UNSUBMITTED_MEMBER + " ORDER BY k.entry_id")
    rows = db.execute(sql, (now_ms,)).fetchall()
    return [(r[0], r[1], bytes(r[2])) for r in rows]
