"""``sanaq-gateway staff ...``: staff accounts from the gateway's own CLI, run as real processes.

The installed console script is run (not a Python function), against the
staff.db of a real gateway on loopback, so a created account is proved by
logging in, and a changed password or disabled account by the dashboard's
answer. ``python -m gateway.staff`` stays as an alias of the same code.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .harness import World
from .staff_browser import StaffClient, StaffGateway, start_staff_gateway

GATEWAY = Path(sys.executable).parent / "sanaq-gateway"
GOOD = "a fresh and long password"


def gateway_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GATEWAY), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def staff(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return gateway_cli("staff", *args, stdin=stdin)


def write_config(tmp_path: Path, census_db: Path, extra: str = "") -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(f'database = "sqlite:///{census_db}"\n{extra}[server]\nplain_http = true\n')
    return config


def users_in(staff_db: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(staff_db) as conn:
        return conn.execute("SELECT username, role, disabled FROM users ORDER BY username").fetchall()


@pytest.fixture
async def gw(world: World, tmp_path: Path) -> AsyncIterator[StaffGateway]:
    gateway = await start_staff_gateway(world, tmp_path, users=())
    yield gateway
    await gateway.stop()


def test_the_console_script_is_installed() -> None:
    assert GATEWAY.is_file() and os.access(GATEWAY, os.X_OK), "run `make setup`: sanaq-gateway is missing"


def test_help_names_every_account_command() -> None:
    top = gateway_cli("--help")
    assert top.returncode == 0 and "staff" in top.stdout and "manage staff dashboard accounts" in top.stdout
    group = staff("--help")
    assert group.returncode == 0
    for command in ("add-user", "set-password", "disable-user", "enable-user", "unlock-user", "list-users"):
        assert command in group.stdout
        done = staff(command, "--help")
        assert done.returncode == 0 and f"usage: sanaq-gateway staff {command}" in done.stdout
        assert "--db" in done.stdout and "--config" in done.stdout
    assert "shorter than 12 characters" in " ".join(staff("add-user", "--help").stdout.split())
    assert "--min-length" not in staff("add-user", "--help").stdout  # hidden, as before


async def test_accounts_made_by_the_gateway_cli_log_in_to_a_real_gateway(gw: StaffGateway, tmp_path: Path) -> None:
    config = write_config(tmp_path, gw.db_path)
    done = staff("add-user", "--config", str(config), "--username", "Alice", "--role", "admin", "--password-file", "-",
                 stdin=GOOD + "\nsecond line is ignored\n")
    assert done.returncode == 0 and done.stdout == "added alice (admin)\n", done.stderr
    assert GOOD not in done.stdout + done.stderr
    assert gw.staff_db == gw.db_path.parent / "staff.db"  # --config found the file serve opens
    assert stat.S_IMODE(gw.staff_db.stat().st_mode) == 0o600
    listed = staff("list-users", "--db", str(gw.staff_db))
    assert listed.returncode == 0 and listed.stdout == "alice\tadmin\tactive\n"

    alice = StaffClient(gw)
    try:
        assert await alice.login("alice", GOOD) == 303
        assert (await alice.get("/staff/"))[0] == 200
        new = tmp_path / "new.txt"
        new.write_text("an entirely different passphrase\n")
        done = staff("set-password", "--db", str(gw.staff_db), "--username", "alice", "--password-file", str(new))
        assert done.returncode == 0 and done.stdout == "password set for alice\n", done.stderr
        assert (await alice.get("/staff/"))[0] == 303  # the session ended with the old password
        assert await alice.login("alice", GOOD) == 401
        assert await alice.login("alice", "an entirely different passphrase") == 303
        done = staff("disable-user", "--db", str(gw.staff_db), "--username", "alice")
        assert done.returncode == 0 and done.stdout == "disabled alice\n"
        assert (await alice.get("/staff/"))[0] == 303
        assert staff("list-users", "--config", str(config)).stdout == "alice\tadmin\tdisabled\n"
        assert staff("enable-user", "--db", str(gw.staff_db), "--username", "alice").returncode == 0
        assert await alice.login("alice", "an entirely different passphrase") == 303
    finally:
        await alice.close()
    rows = gw.staff_rows("SELECT action FROM audit ORDER BY id")
    assert [r[0] for r in rows if r[0].startswith("user.")] == [
        "user.added", "user.password_set", "user.disabled", "user.enabled"
    ]


@pytest.mark.parametrize(
    ("role", "password", "min_length", "message"),
    [
        ("admin", "", None, "the password is empty"),
        ("admin", "   ", None, "the password is empty"),
        ("admin", "short pass", None, "at least 12"),
        ("admin", "elevenchars", "4", "at least 12"),  # --min-length never lowers an admin's minimum
        ("viewer", "password123456", None, "too easy to guess"),  # the bundled common list
        ("viewer", "aaaaaaaaaaaaaaaa", None, "too easy to guess"),
        ("viewer", "my name is carol!", None, "too easy to guess"),  # contains the username
        ("viewer", "x" * 1025 + "yz", None, "at most 1024"),
    ],
)
def test_the_password_policy_is_the_dashboards(tmp_path: Path, role, password, min_length, message) -> None:
    db = tmp_path / "staff.db"
    pw = tmp_path / "pw.txt"
    pw.write_text(password + "\n")
    extra = ("--min-length", min_length) if min_length else ()
    done = staff("add-user", "--db", str(db), "--username", "carol", "--role", role, "--password-file", str(pw), *extra)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert done.stderr.startswith("sanaq-gateway staff: error: ")
    if password.strip():
        assert password not in done.stdout + done.stderr
    assert users_in(db) == []  # nothing else changed


def test_a_viewer_may_get_a_shorter_password_only_through_the_hidden_option(tmp_path: Path) -> None:
    db = tmp_path / "staff.db"
    pw = tmp_path / "pw.txt"
    pw.write_text("tundra-otter\n")  # 12 characters: the default minimum
    pw_short = tmp_path / "short.txt"
    pw_short.write_text("otter-tun\n")
    assert staff("add-user", "--db", str(db), "--username", "v1", "--role", "viewer",
                 "--password-file", str(pw_short)).returncode == 2
    done = staff("add-user", "--db", str(db), "--username", "v1", "--role", "viewer",
                 "--password-file", str(pw_short), "--min-length", "8")
    assert done.returncode == 0, done.stderr
    assert users_in(db) == [("v1", "viewer", 0)]


def test_staff_db_named_by_the_configuration_is_resolved_like_serve_does(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    census = tmp_path / "var" / "census.db"
    config = write_config(tmp_path / "etc", census, extra='[staff]\ndb_path = "accounts/staff.db"\n')
    (tmp_path / "etc" / "accounts").mkdir(mode=0o700)
    pw = tmp_path / "pw.txt"
    pw.write_text(GOOD)
    done = staff(
        "add-user", "--config", str(config), "--username", "dana", "--role", "viewer", "--password-file", str(pw)
    )
    assert done.returncode == 0, done.stderr
    assert users_in(tmp_path / "etc" / "accounts" / "staff.db") == [("dana", "viewer", 0)]
    assert not census.parent.exists()  # the census store is not touched


@pytest.mark.parametrize(
    ("args", "rc", "message"),
    [
        (("list-users",), 2, "one of the arguments --db --config is required"),
        (("list-users", "--db", "A", "--config", "B"), 2, "not allowed with argument"),
        (("add-user", "--db", "DB", "--username", "x1", "--password-file", "-"), 2, "--role"),
        (("add-user", "--db", "DB", "--username", "x1", "--role", "root", "--password-file", "-"), 2, "invalid choice"),
        (("add-user", "--db", "DB", "--username", "-bad", "--role", "viewer", "--password-file", "PW"), 2, "username:"),
        (("set-password", "--db", "DB", "--username", "nobody", "--password-file", "PW"), 2, "no user 'nobody'"),
        (("disable-user", "--db", "DB", "--username", "nobody"), 2, "no user 'nobody'"),
        (("add-user", "--db", "DB", "--username", "x1", "--role", "viewer", "--password-file", "MISSING"), 2,
         "cannot read the password file"),
        (("list-users", "--config", "MISSING"), 2, "cannot read config"),
        (("list-users", "--config", "BADCONFIG"), 2, "database must be"),
        (("list-users", "--db", "FILE/staff.db"), 1, "cannot open staff database"),
        (("frobnicate-user", "--db", "DB"), 2, "invalid choice"),
    ],
)
def test_mistakes_get_a_clear_error_and_change_nothing(tmp_path: Path, args, rc, message) -> None:
    (tmp_path / "pw.txt").write_text(GOOD)
    (tmp_path / "bad.toml").write_text('database = "mysql://x"\n[server]\nplain_http = true\n')
    names = {"DB": tmp_path / "staff.db", "PW": tmp_path / "pw.txt", "MISSING": tmp_path / "missing",
             "BADCONFIG": tmp_path / "bad.toml", "FILE/staff.db": tmp_path / "pw.txt" / "staff.db"}
    done = staff(*(str(names.get(a, a)) for a in args))
    assert done.returncode == rc and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "staff.db").exists() or users_in(tmp_path / "staff.db") == []


def test_the_old_entry_point_is_an_alias_of_the_same_code(tmp_path: Path) -> None:
    db = tmp_path / "staff.db"
    pw = tmp_path / "pw.txt"
    pw.write_text(GOOD)
    old = subprocess.run(
        [sys.executable, "-m", "gateway.staff", "add-user", "--db", str(db), "--username", "erin", "--role", "admin",
         "--password-file", str(pw)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert old.returncode == 0 and old.stdout == "added erin (admin)\n", old.stderr
    assert staff("list-users", "--db", str(db)).stdout == "erin\tadmin\tactive\n"
    again = subprocess.run(
        [sys.executable, "-m", "gateway.staff", "add-user", "--db", str(db), "--username", "erin", "--role", "admin",
         "--password-file", str(pw)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert again.returncode == 2 and again.stderr == "python -m gateway.staff: error: user 'erin' exists already\n"
    unlocked = staff("unlock-user", "--db", str(db), "--username", "erin")
    assert unlocked.stdout == "unlocked erin (0 failed logins forgotten)\n"
