"""Login throttling for staff accounts: slow a guesser down without letting anyone lock the owner out.

Two rules, both kept in staff.db:

1. **Per (username, client address)**: the first ``login_free_failures``
   failures cost nothing; from then on each failure makes that pair wait
   ``login_delay_base_s * 2**k`` (at most ``login_delay_max_s``) before its next
   attempt, and every attempt inside the wait gets ``RateLimited``. A pair
   that stays quiet for ``login_window_s`` after its wait starts afresh. An
   attacker's failures slow only the attacker's own address: the owner, and
   everyone else behind the attacker's NAT with another username, logs in as
   usual. IPv6 clients are keyed by their /64 (one host usually holds a whole
   /64, so rotating addresses inside it gains nothing).
2. **Per username, from all addresses**: ``login_user_ceiling`` failures
   within ``login_ceiling_window_s`` lock the username (``RateLimited`` with
   ``locked=True``) until the window passes or an administrator clears it
   (``sanaq-gateway staff unlock-user`` or the Accounts page). This caps
   a guessing campaign spread over many addresses; it is the one rule an
   attacker can use to lock an account, and it takes many addresses and hours.

An attempt is **reserved** (counted as a failure, its wait started) in the
same staff.db transaction that checks the rules, *before* the password is
verified; a successful login takes its reservation back. staff.db runs every
job on one thread, so concurrent attempts are serialised there and no number
of parallel requests gets more attempts past the check than the rules allow.

Unknown usernames are throttled exactly like known ones, so the answers say
nothing about which accounts exist.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .config import StaffConfig
from .db import StaffConn, transaction
from .errors import RateLimited

__all__ = ["LoginThrottle", "Reservation", "ThrottledUser", "address_key", "clear_user", "throttled_users"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """An attempt counted before its password is checked; ``LoginThrottle.succeeded`` takes it back."""

    username: str
    address: str
    failure_id: int


@dataclass(frozen=True, slots=True)
class ThrottledUser:
    username: str
    failures: int  # failures from all addresses inside the ceiling window
    delayed_addresses: int  # (username, address) pairs that must wait now
    locked: bool  # the ceiling is reached


def address_key(remote: str | None) -> str:
    """The throttling key of a client address: IPv4 as is, IPv6 as its /64, anything else verbatim."""
    if not remote:
        return "unknown"
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _subject(username: str) -> str:
    return f"user:{username}"


def _ceil_s(ms: int) -> int:
    return max(1, (ms + 999) // 1000)


class LoginThrottle:
    """The two rules above; every method takes the staff.db connection and runs on its thread."""

    def __init__(self, config: StaffConfig) -> None:
        self._config = config

    def delay_ms(self, failures: int) -> int:
        """The wait after the ``failures``-th consecutive failure of one (username, address) pair."""
        c = self._config
        if failures < c.login_free_failures:
            return 0
        exponent = min(failures - c.login_free_failures, 40)
        return int(min(c.login_delay_max_s, c.login_delay_base_s * 2**exponent)) * 1000

    def reserve(self, conn: StaffConn, username: str, address: str, now: int) -> Reservation:
        """Check both rules and count this attempt as a failure; raises ``RateLimited``."""
        c = self._config
        window_ms, ceiling_ms = c.login_window_s * 1000, c.login_ceiling_window_s * 1000
        with transaction(conn):
            conn.execute("DELETE FROM login_pairs WHERE next_allowed_ms + ? <= ?", (window_ms, now))
            conn.execute("DELETE FROM login_failures WHERE at_ms <= ?", (now - ceiling_ms,))
            count, oldest = conn.execute(
                "SELECT count(*), min(at_ms) FROM login_failures WHERE subject = ?", (_subject(username),)
            ).fetchone()
            if count >= c.login_user_ceiling:
                raise RateLimited(
                    "this account is locked after too many failed logins",
                    retry_after_s=_ceil_s(oldest + ceiling_ms - now),
                    locked=True,
                )
            row = conn.execute(
                "SELECT failures, next_allowed_ms FROM login_pairs WHERE username = ? AND address = ?",
                (username, address),
            ).fetchone()
            if row is not None and now < row[1]:
                raise RateLimited("too many failed logins; try again later", retry_after_s=_ceil_s(row[1] - now))
            failures = (row[0] if row is not None else 0) + 1
            conn.execute(
                "INSERT INTO login_pairs (username, address, failures, next_allowed_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (username, address) DO UPDATE SET failures = excluded.failures,"
                " next_allowed_ms = excluded.next_allowed_ms",
                (username, address, failures, now + self.delay_ms(failures)),
            )
            failure_id = int(conn.execute(
                "INSERT INTO login_failures (subject, at_ms) VALUES (?, ?) RETURNING id", (_subject(username), now)
            ).fetchone()[0])
        return Reservation(username, address, failure_id)

    def succeeded(self, conn: StaffConn, reservation: Reservation) -> None:
        """The password was right: forget the pair's failures and take the reservation back.

        Runs inside the caller's transaction. Failures of the same username from
        other addresses stay counted towards the ceiling.
        """
        conn.execute(
            "DELETE FROM login_pairs WHERE username = ? AND address = ?", (reservation.username, reservation.address)
        )
        conn.execute("DELETE FROM login_failures WHERE id = ?", (reservation.failure_id,))


def clear_user(conn: StaffConn, username: str) -> int:
    """Forget every failure of ``username`` (ceiling and delays); returns how many were held.

    Runs inside the caller's transaction.
    """
    held = conn.execute("SELECT count(*) FROM login_failures WHERE subject = ?", (_subject(username),)).fetchone()[0]
    conn.execute("DELETE FROM login_failures WHERE subject = ?", (_subject(username),))
    conn.execute("DELETE FROM login_pairs WHERE username = ?", (username,))
    return int(held)


def throttled_users(conn: StaffConn, config: StaffConfig, now: int) -> list[ThrottledUser]:
    """Usernames with failures inside the ceiling window or a running delay, most failures first."""
    since = now - config.login_ceiling_window_s * 1000
    failures = dict(
        conn.execute(
            "SELECT substr(subject, 6), count(*) FROM login_failures WHERE subject LIKE 'user:%' AND at_ms > ?"
            " GROUP BY subject",
            (since,),
        ).fetchall()
    )
    delayed = dict(
        conn.execute(
            "SELECT username, count(*) FROM login_pairs WHERE next_allowed_ms > ? GROUP BY username", (now,)
        ).fetchall()
    )
    ceiling = config.login_user_ceiling
    out = [
        ThrottledUser(name, failures.get(name, 0), delayed.get(name, 0), failures.get(name, 0) >= ceiling)
        for name in set(failures) | set(delayed)
    ]
    out.sort(key=lambda u: (-u.failures, u.username))
    return out
