"""Staff account administration: ``python -m gateway.staff add-user --db staff.db ...``.

Passwords are read from a file (``--password-file F``, ``-`` for standard
input), never from the command line, and only the first line is used; it
must not be empty or common, and an admin's has at least 12 characters.
``unlock-user`` clears the failed-login ceiling of a username (see
``gateway/staff/throttle.py``). ``set-institutions`` binds an account to
institutions: it becomes their responsible worker on the dashboard (mints and
revokes their access codes, registers unlisted residents); admins act for all.
Exit codes: 0 done, 2 usage or input error, 1 database failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .accounts import ROLES, add_user, list_users, set_disabled, set_password, unlock_user
from .codes import set_institutions
from .db import connect_staff_db
from .errors import StaffInputError, StaffStoreError

__all__ = ["main"]


def _read_password(path: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StaffInputError(f"cannot read the password file: {e}", field="password-file") from e
    lines = text.splitlines()
    return lines[0] if lines else ""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway.staff", description="Manage staff dashboard accounts.")
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-user", help="create an account")
    add.add_argument("--role", choices=ROLES, required=True)
    pw = sub.add_parser("set-password", help="replace a password (ends the user's sessions)")
    dis = sub.add_parser("disable-user", help="block logins and end sessions")
    ena = sub.add_parser("enable-user", help="allow logins again")
    unl = sub.add_parser("unlock-user", help="clear the failed-login ceiling and delays of a username")
    lst = sub.add_parser("list-users", help="show accounts")
    ins = sub.add_parser(
        "set-institutions",
        help="make an account the responsible worker of these institutions (replaces its list; none: clears it)",
    )
    ins.add_argument("institutions", nargs="*", metavar="CODE", help="institution codes like AB-123456")
    for s in (add, pw, dis, ena, unl, lst, ins):
        s.add_argument("--db", type=Path, required=True, help="path of staff.db")
    for s in (add, pw, dis, ena, unl, ins):
        s.add_argument("--username", required=True)
    for s in (add, pw):
        s.add_argument(
            "--password-file",
            required=True,
            help="file whose first line is the password ('-': stdin); refused when empty, common,"
            " or shorter than 12 characters",
        )
        s.add_argument("--min-length", type=int, default=12, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    now = time.time_ns() // 1_000_000
    try:
        conn = connect_staff_db(args.db, now_ms=now)
        try:
            if args.command == "add-user":
                user = add_user(
                    conn,
                    username=args.username,
                    role=args.role,
                    password=_read_password(args.password_file),
                    now_ms=now,
                    min_length=args.min_length,
                )
                print(f"added {user.username} ({user.role})")
            elif args.command == "set-password":
                password = _read_password(args.password_file)
                set_password(conn, username=args.username, password=password, now_ms=now, min_length=args.min_length)
                print(f"password set for {args.username.strip().lower()}")
            elif args.command == "unlock-user":
                held = unlock_user(conn, username=args.username, now_ms=now)
                print(f"unlocked {args.username.strip().lower()} ({held} failed logins forgotten)")
            elif args.command == "set-institutions":
                set_institutions(conn, args.username.strip().lower(), args.institutions, now_ms=now)
                print(f"{args.username.strip().lower()}: responsible worker of {len(set(args.institutions))}"
                      " institution(s)")
            elif args.command in ("disable-user", "enable-user"):
                set_disabled(conn, username=args.username, disabled=args.command == "disable-user", now_ms=now)
                print(f"{args.command.split('-')[0]}d {args.username.strip().lower()}")
            else:
                for u in list_users(conn):
                    print(f"{u.username}\t{u.role}\t{'disabled' if u.disabled else 'active'}")
        finally:
            conn.close()
    except StaffInputError as e:
        where = f"{e.field}: " if e.field else ""
        print(f"gateway.staff: error: {where}{e}", file=sys.stderr)
        return 2
    except StaffStoreError as e:
        print(f"gateway.staff: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
