"""Staff accounts, password hashing, sessions and login throttling.

Passwords are hashed with Argon2id (argon2-cffi defaults, RFC 9106 "low
memory" profile: 64 MiB, t=3, p=4). Verification runs on a worker thread and
at most ``max_concurrent_password_checks`` at once, so a login flood cannot
eat the host's memory. An unknown username costs the same verification as a
known one and gets the same answer.

Logins are throttled by ``throttle.LoginThrottle`` (per username and client
address with growing delays, plus a per-username ceiling an admin can clear);
each attempt is reserved there before its password is checked. Passwords
are checked by ``check_password``: not empty, not common, at least
``ADMIN_MIN_LENGTH`` characters for admins whatever the caller asks.

Sessions are server-side: the browser holds a random 32-byte token; staff.db
holds only its SHA-256, the user, a per-session CSRF token, and two limits
(absolute expiry and inactivity). Staff authentication shares nothing with
tablet or station keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from l10n import N_

from .config import StaffConfig
from .db import INTEGRITY_ERRORS, StaffConn, StaffStorage, transaction
from .errors import AuthRefused, LoginBusy, StaffInputError
from .throttle import LoginThrottle, Reservation, clear_user

__all__ = [
    "ADMIN_MIN_LENGTH",
    "COMMON_PASSWORDS",
    "MAX_PASSWORD_LENGTH",
    "ROLES",
    "Accounts",
    "NewSession",
    "StaffSession",
    "StaffUser",
    "add_user",
    "check_password",
    "list_users",
    "set_disabled",
    "set_password",
    "unlock_user",
    "write_audit",
]

ROLES = ("viewer", "admin")
ADMIN_MIN_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
COMMON_PASSWORDS = Path(__file__).parent / "common_passwords.txt"
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


@dataclass(frozen=True, slots=True)
class StaffUser:
    id: int
    username: str
    role: str
    disabled: bool = False
    language: str | None = None  # the pages' language the user chose (None: the configured default)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class StaffSession:
    user: StaffUser
    csrf_token: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str
    session: StaffSession


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


def normalise_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME.match(name):
        raise StaffInputError(N_("2-64 of a-z 0-9 . _ - starting with a letter or digit"), field="username")
    return name


def write_audit(conn: StaffConn, at_ms: int, user_id: int | None, action: str, **detail: object) -> None:
    conn.execute(
        "INSERT INTO audit (at_ms, user_id, action, detail) VALUES (?, ?, ?, ?)",
        (at_ms, user_id, action, json.dumps(detail, sort_keys=True, ensure_ascii=False)),
    )


# ---- synchronous account administration (the CLI) -------------------------------------------


def _common_passwords() -> frozenset[str]:
    try:
        text = COMMON_PASSWORDS.read_text("utf-8")
    except OSError as e:  # the list ships with the package: a missing file is a broken install
        raise StaffInputError(f"cannot read the common-password list {COMMON_PASSWORDS}: {e.strerror}") from e
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_password(password: str, *, role: str, username: str = "", min_length: int = ADMIN_MIN_LENGTH) -> None:
    """Refuse a password that is empty, too short, too long, or common; raises ``StaffInputError``.

    ``min_length`` can be lowered for viewers (never below 1), never for admins:
    an admin password has at least ``ADMIN_MIN_LENGTH`` characters whatever is asked.
    """
    floor = max(min_length, ADMIN_MIN_LENGTH) if role == "admin" else max(min_length, 1)
    if not password.strip():
        raise StaffInputError("the password is empty", field="password")
    if len(password) < floor:
        raise StaffInputError(f"password must have at least {floor} characters", field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise StaffInputError(f"password must have at most {MAX_PASSWORD_LENGTH} characters", field="password")
    folded = " ".join(password.lower().split())
    common = _common_passwords()
    if (
        folded in common
        or folded.replace(" ", "") in common
        or len(set(folded)) <= 2
        or (len(username) >= 4 and username in folded)
    ):
        raise StaffInputError(
            "this password is too easy to guess (a common password, a repeated character, or the username)",
            field="password",
        )


def add_user(
    conn: StaffConn,
    *,
    username: str,
    role: str,
    password: str,
    now_ms: int,
    min_length: int = ADMIN_MIN_LENGTH,
) -> StaffUser:
    name = normalise_username(username)
    if role not in ROLES:
        raise StaffInputError(f"role must be one of {', '.join(ROLES)}", field="role")
    check_password(password, role=role, username=name, min_length=min_length)
    hashed = PasswordHasher().hash(password)
    try:
        with transaction(conn):
            user_id = int(conn.execute(
                "INSERT INTO users (username, role, password_hash, created_at_ms, password_changed_at_ms)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (name, role, hashed, now_ms, now_ms),
            ).fetchone()[0])
            write_audit(conn, now_ms, None, "user.added", username=name, role=role)
    except INTEGRITY_ERRORS as e:
        raise StaffInputError(f"user {name!r} exists already", field="username") from e
    return StaffUser(user_id, name, role)


def set_password(
    conn: StaffConn, *, username: str, password: str, now_ms: int, min_length: int = ADMIN_MIN_LENGTH
) -> None:
    """New password; every session of that user ends."""
    name = normalise_username(username)
    row = conn.execute("SELECT id, role FROM users WHERE username = ?", (name,)).fetchone()
    if row is None:
        raise StaffInputError(f"no user {name!r}", field="username")
    check_password(password, role=row[1], username=name, min_length=min_length)
    hashed = PasswordHasher().hash(password)
    with transaction(conn):
        cur = conn.execute(
            "UPDATE users SET password_hash = ?, password_changed_at_ms = ? WHERE id = ? AND role = ?",
            (hashed, now_ms, row[0], row[1]),
        )
        if cur.rowcount != 1:
            raise StaffInputError(f"user {name!r} changed meanwhile; try again", field="username")
        conn.execute("DELETE FROM sessions WHERE user_id = ?", (row[0],))
        write_audit(conn, now_ms, None, "user.password_set", username=name)


def unlock_user(conn: StaffConn, *, username: str, now_ms: int, by_user_id: int | None = None) -> int:
    """Clear the login ceiling and delays of ``username``; returns the failures forgotten."""
    name = normalise_username(username)
    with transaction(conn):
        held = clear_user(conn, name)
        write_audit(conn, now_ms, by_user_id, "user.unlocked", username=name, failures=held)
    return held


def set_disabled(conn: StaffConn, *, username: str, disabled: bool, now_ms: int) -> None:
    name = normalise_username(username)
    with transaction(conn):
        cur = conn.execute("UPDATE users SET disabled = ? WHERE username = ?", (int(disabled), name))
        if cur.rowcount == 0:
            raise StaffInputError(f"no user {name!r}", field="username")
        conn.execute("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = ?)", (name,))
        write_audit(conn, now_ms, None, "user.disabled" if disabled else "user.enabled", username=name)


def list_users(conn: StaffConn) -> list[StaffUser]:
    rows = conn.execute("SELECT id, username, role, disabled FROM users ORDER BY username").fetchall()
    return [StaffUser(r[0], r[1], r[2], bool(r[3])) for r in rows]


# ---- the asyncio side: logins and sessions -----------------------------------------------------


class Accounts:
    def __init__(self, db: StaffStorage, config: StaffConfig, clock: Callable[[], int]) -> None:
        self._db = db
        self._config = config
        self._clock = clock
        self._hasher = PasswordHasher()
        self._checks = asyncio.Semaphore(config.max_concurrent_password_checks)
        self._throttle = LoginThrottle(config)
        self._pending = 0
        self._dummy_hash: str | None = None

    async def login(self, username: str, password: str, address: str) -> NewSession:
        """A new session, or ``RateLimited`` / ``AuthRefused`` (never says which part was wrong).

        The attempt is reserved with the throttle before the password is checked
        (see ``throttle``), so concurrent attempts cannot outrun the limits. At
        most ``max_pending_logins`` attempts are in flight; more get ``LoginBusy``
        before anything is counted or stored, which bounds what a flood can
        reserve (and write to staff.db) to what the password checks get through.
        """
        if self._pending >= self._config.max_pending_logins:
            raise LoginBusy("too many logins are being checked; try again in a moment", retry_after_s=1)
        self._pending += 1
        try:
            return await self._login(username, password, address)
        finally:
            self._pending -= 1

    async def _login(self, username: str, password: str, address: str) -> NewSession:
        now = self._clock()
        name = username.strip().lower()[:64]
        reservation = await self._db.run(lambda conn: self._throttle.reserve(conn, name, address, now))
        row = await self._db.run(
            lambda conn: conn.execute(
                "SELECT id, username, role, disabled, password_hash FROM users WHERE username = ?", (name,)
            ).fetchone()
        )
        stored_hash = row[4] if row is not None else await self._dummy()
        ok = await self._verify(stored_hash, password)
        if row is None or not ok or row[3]:
            await self._db.run(lambda conn: write_audit(conn, now, None, "login.failed", username=name))
            raise AuthRefused("wrong username or password")
        return await self._open_session(StaffUser(row[0], row[1], row[2], False), stored_hash, password, reservation)

    async def _open_session(
        self, user: StaffUser, stored_hash: str, password: str, reservation: Reservation
    ) -> NewSession:
        now = self._clock()
        token = secrets.token_urlsafe(32)
        session = StaffSession(user, secrets.token_urlsafe(32), now + self._config.session_ttl_s * 1000)
        rehash = self._hasher.check_needs_rehash(stored_hash)
        new_hash = await asyncio.to_thread(self._hasher.hash, password) if rehash else None

        def store(conn: StaffConn) -> None:
            with transaction(conn):
                self._throttle.succeeded(conn, reservation)
                conn.execute("DELETE FROM sessions WHERE expires_at_ms <= ? OR last_seen_ms <= ?", self._limits(now))
                conn.execute(
                    "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at_ms, last_seen_ms, expires_at_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (_token_hash(token), user.id, session.csrf_token, now, now, session.expires_at_ms),
                )
                if new_hash is not None:
                    conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (new_hash, user.id))
                write_audit(conn, now, user.id, "login")

        await self._db.run(store)
        return NewSession(token, session)

    async def session(self, token: str | None, *, touch: bool = True) -> StaffSession | None:
        """The live session for a cookie token, or None (unknown, expired, idle too long, user disabled)."""
        if not token or len(token) > 128:
            return None
        now = self._clock()
        digest = _token_hash(token)

        def look(conn: StaffConn) -> StaffSession | None:
            row = conn.execute(
                "SELECT s.csrf_token, s.expires_at_ms, s.last_seen_ms, u.id, u.username, u.role, u.disabled, u.language"
                " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
                (digest,),
            ).fetchone()
            if row is None:
                return None
            expired = now >= row[1] or now - row[2] >= self._config.session_idle_s * 1000 or row[6]
            if expired:
                conn.execute("DELETE FROM sessions WHERE token_hash = ?", (digest,))
                return None
            if touch and now - row[2] >= 15_000:
                conn.execute("UPDATE sessions SET last_seen_ms = ? WHERE token_hash = ?", (now, digest))
            return StaffSession(StaffUser(row[3], row[4], row[5], language=row[7]), row[0], row[1])

        return await self._db.run(look)

    async def set_language(self, user_id: int, language: str) -> None:
        """Remember the pages' language of one user (one of ``l10n.LANGUAGES``, checked by the caller)."""

        def store(conn: StaffConn) -> None:
            with transaction(conn):
                conn.execute("UPDATE users SET language = ? WHERE id = ?", (language, user_id))

        await self._db.run(store)

    async def logout(self, token: str, user_id: int) -> None:
        now = self._clock()

        def drop(conn: StaffConn) -> None:
            with transaction(conn):
                conn.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))
                write_audit(conn, now, user_id, "logout")

        await self._db.run(drop)

    async def audit(self, user_id: int | None, action: str, **detail: object) -> None:
        now = self._clock()
        await self._db.run(lambda conn: write_audit(conn, now, user_id, action, **detail))

    # ---- internals ------------------------------------------------------------------------------
    def _limits(self, now: int) -> tuple[int, int]:
        return now, now - self._config.session_idle_s * 1000

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(16))
        return self._dummy_hash

    async def _verify(self, stored_hash: str, password: str) -> bool:
        async with self._checks:
            try:
                return await asyncio.to_thread(self._hasher.verify, stored_hash, password)
            except (VerificationError, InvalidHashError):
                return False
