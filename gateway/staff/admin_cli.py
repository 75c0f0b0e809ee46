"""Staff account administration from the command line: ``sanaq-gateway staff COMMAND ...``.

One implementation behind two entry points: ``sanaq-gateway staff`` (the
gateway's CLI) and the older ``python -m gateway.staff`` (kept as an alias).
Both call ``add_commands`` to build the same sub-commands and ``run`` to run
them, so options, password policy, messages and exit codes are identical.

staff.db is named by ``--db PATH`` or found from the gateway's configuration
(``--config gateway.toml``: ``[staff] db_path``, else ``staff.db`` next to the
SQLite census database), exactly where ``sanaq-gateway serve`` opens it. When
that configuration's ``database`` is PostgreSQL, the accounts are the staff
tables of that database (ADR 0012): ``--config`` reaches them with the same
URL and role as the gateway, and each command is one transaction.

Passwords are read from a file (``--password-file F``, ``-`` for standard
input), never from the command line, and only the first line is used; they
are refused when empty, on the common-password list, or shorter than 12
characters (``accounts.check_password``). ``unlock-user`` clears the
failed-login ceiling of a username (see ``gateway/staff/throttle.py``).
``set-institutions`` binds an account to institutions: it becomes their
responsible worker on the dashboard (mints and revokes their access codes,
registers unlisted residents); admins act for all.
Exit codes: 0 done, 2 usage or input error, 1 database failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from runtime.toml_config import ConfigError

from .accounts import ADMIN_MIN_LENGTH, ROLES, add_user, list_users, set_disabled, set_password, unlock_user
from .codes import set_institutions
from .db import StaffConn, connect_staff_db
from .errors import StaffInputError, StaffStoreError

__all__ = ["COMMANDS", "DESCRIPTION", "add_commands", "run"]

DESCRIPTION = (
    "Manage staff dashboard accounts in staff.db (named by --db, or found from the gateway's --config; "
    "with a PostgreSQL configuration, in the staff tables of its database). "
    "Passwords are read from a file or stdin, never the command line. "
    "Exit codes: 0 done, 2 usage or input error, 1 database failure."
)
COMMANDS = ("add-user", "set-password", "disable-user", "enable-user", "unlock-user", "list-users", "set-institutions")


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add the account sub-commands (``add-user``, ``set-password``, ...) to ``parser``."""
    sub = parser.add_subparsers(dest="staff_command", required=True, metavar="COMMAND")
    add = sub.add_parser("add-user", help="create an account", description="Create a staff account.")
    add.add_argument("--role", choices=ROLES, required=True, help="viewer (read) or admin (acts, lists, accounts)")
    pw = sub.add_parser(
        "set-password",
        help="replace a password (ends the user's sessions)",
        description="Replace a user's password; every session of that user ends.",
    )
    dis = sub.add_parser(
        "disable-user", help="block logins and end sessions", description="Block a user's logins; sessions end."
    )
    ena = sub.add_parser("enable-user", help="allow logins again", description="Allow a disabled user to log in.")
    unl = sub.add_parser(
        "unlock-user",
        help="clear the failed-login ceiling and delays of a username",
        description="Forget the failed logins of a username (the ceiling and the per-address delays); audited.",
    )
    lst = sub.add_parser(
        "list-users", help="show accounts", description="Print one line per account: username, role, status."
    )
    ins = sub.add_parser(
        "set-institutions",
        help="make an account the responsible worker of these institutions (replaces its list; none: clears it)",
        description="Bind an account to institutions: it mints and revokes their access codes and registers"
        " unlisted residents on the dashboard. The list given replaces the account's list; none clears it.",
    )
    ins.add_argument("institutions", nargs="*", metavar="CODE", help="institution codes like AB-123456")
    for s in (add, pw, dis, ena, unl, lst, ins):
        where = s.add_mutually_exclusive_group(required=True)
        where.add_argument("--db", type=Path, help="path of staff.db (created, mode 0600, if missing)")
        where.add_argument(
            "--config",
            type=Path,
            help="the gateway's TOML configuration (e.g. /etc/sanaq/gateway.toml): use the staff.db it names,"
            " or on PostgreSQL the staff tables of its database",
        )
    for s in (add, pw, dis, ena, unl, ins):
        s.add_argument("--username", required=True, help="2-64 of a-z 0-9 . _ - (case-folded)")
    for s in (add, pw):
        s.add_argument(
            "--password-file",
            required=True,
            help="file whose first line is the password ('-': stdin); refused when empty, common,"
            f" or shorter than {ADMIN_MIN_LENGTH} characters",
        )
        s.add_argument("--min-length", type=int, default=ADMIN_MIN_LENGTH, help=argparse.SUPPRESS)


def _read_password(path: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StaffInputError(f"cannot read the password file: {e}", field="password-file") from e
    lines = text.splitlines()
    return lines[0] if lines else ""


def _staff_db(args: argparse.Namespace) -> Path | str:
    """staff.db's path, or the PostgreSQL URL whose staff tables hold the accounts."""
    if args.db is not None:
        return Path(args.db)
    from ..config import load_config  # noqa: PLC0415 - gateway.config imports this package (a cycle at import)

    try:
        config = load_config(args.config)
        if config.sqlite_path is None:
            return config.database
        return config.staff.staff_db(config.sqlite_path)
    except ConfigError as e:
        raise StaffInputError(f"{args.config}: {e}", field="config") from e


def run(args: argparse.Namespace, *, prog: str) -> int:
    """Run the parsed sub-command; messages go to stdout, errors to stderr as ``PROG: error: ...``."""
    now = time.time_ns() // 1_000_000
    try:
        where = _staff_db(args)
        if isinstance(where, Path):
            conn = connect_staff_db(where, now_ms=now)
            try:
                message = _run(conn, args, now)
            finally:
                conn.close()
        else:
            message = _run_postgres(where, args, now)
    except StaffInputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except StaffStoreError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    if message:
        print(message)
    return 0


def _run_postgres(dsn: str, args: argparse.Namespace, now: int) -> str:
    import psycopg  # noqa: PLC0415 - the PostgreSQL extra is installed only where PostgreSQL is used

    from .db_postgres import connect_pg_staff, error_text, run_in_transaction  # noqa: PLC0415 - same

    pg = connect_pg_staff(dsn)
    try:
        return run_in_transaction(pg, lambda conn: _run(conn, args, now))
    except psycopg.Error as e:
        raise StaffStoreError(f"staff database operation failed: {error_text(e)}") from e
    finally:
        pg.close()


def _run(conn: StaffConn, args: argparse.Namespace, now: int) -> str:
    command = args.staff_command
    if command == "add-user":
        user = add_user(
            conn,
            username=args.username,
            role=args.role,
            password=_read_password(args.password_file),
            now_ms=now,
            min_length=args.min_length,
        )
        return f"added {user.username} ({user.role})"
    if command == "set-password":
        password = _read_password(args.password_file)
        set_password(conn, username=args.username, password=password, now_ms=now, min_length=args.min_length)
        return f"password set for {args.username.strip().lower()}"
    if command == "unlock-user":
        held = unlock_user(conn, username=args.username, now_ms=now)
        return f"unlocked {args.username.strip().lower()} ({held} failed logins forgotten)"
    if command == "set-institutions":
        set_institutions(conn, args.username.strip().lower(), args.institutions, now_ms=now)
        return f"{args.username.strip().lower()}: responsible worker of {len(set(args.institutions))} institution(s)"
    if command in ("disable-user", "enable-user"):
        set_disabled(conn, username=args.username, disabled=command == "disable-user", now_ms=now)
        return f"{command.split('-')[0]}d {args.username.strip().lower()}"
    lines = [f"{u.username}\t{u.role}\t{'disabled' if u.disabled else 'active'}" for u in list_users(conn)]
    return "\n".join(lines)
