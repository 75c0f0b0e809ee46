"""Files holding sheets, keys or personal data are 0600 and their state directories 0700, whatever the umask.

Each case runs the real component (the gateway's SQLite census store, the
staff store, the tablet outbox, the USB spool and station) under umask 022
and 000 and reads the modes back with ``stat``; SQLite's ``-wal``/``-shm`` are
checked while the connection holds them open.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.staff.db import connect_staff_db
from gateway.store_sqlite import SqliteStore
from runtime.private_files import make_private_dir, open_private, prepare_private_sqlite, touch_private
from tablet.outbox import Outbox
from usb_ingest.spool import Spool

UMASKS = [pytest.param(0o022, id="umask-022"), pytest.param(0o000, id="umask-000")]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def modes_in(directory: Path) -> dict[str, int]:
    return {f.name: mode(f) for f in directory.iterdir()}


def widen_all(directory: Path) -> None:
    for f in directory.iterdir():
        f.chmod(0o644)


@pytest.fixture(params=UMASKS)
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


async def test_census_store_files_and_directory_are_private(umask: int, tmp_path: Path) -> None:
    top = tmp_path / "state"
    db = top / "gateway" / "census.db"
    store = SqliteStore(db)
    await store.open()
    try:
        files = [db, db.with_name("census.db-wal"), db.with_name("census.db-shm")]
        assert all(f.exists() for f in files)
        found = {"state": mode(top), "state/gateway": mode(db.parent), **{f.name: mode(f) for f in files}}
    finally:
        await store.close()
    assert found == {"state": 0o700, "state/gateway": 0o700, "census.db": 0o600, "census.db-wal": 0o600,
                     "census.db-shm": 0o600}


async def test_a_census_store_left_world_readable_is_narrowed_at_open(umask: int, tmp_path: Path) -> None:
    db = tmp_path / "census.db"
    store = SqliteStore(db)
    await store.open()
    await store.close()
    widen_all(tmp_path)
    store = SqliteStore(db)
    await store.open()
    try:
        found = modes_in(tmp_path)
    finally:
        await store.close()
    assert "census.db-wal" in found
    assert found == dict.fromkeys(found, 0o600)


def test_staff_store_files_and_directory_are_private(umask: int, tmp_path: Path) -> None:
    db = tmp_path / "staff-state" / "staff.db"
    conn = connect_staff_db(db, now_ms=1_600_000_000_000)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        found = {f.name: mode(f) for f in db.parent.iterdir()}
    finally:
        conn.close()
    assert {"staff.db", "staff.db-wal", "staff.db-shm"} <= set(found)
    assert (mode(db.parent), found) == (0o700, dict.fromkeys(found, 0o600))


@pytest.mark.parametrize("existing", [None, 0o644], ids=["new", "left-0644"])
def test_tablet_outbox_files_are_private(umask: int, existing: int | None, tmp_path: Path) -> None:
    path = tmp_path / "home" / "outbox.db"
    if existing is not None:
        Outbox.open(path, device_id="TAB-0001", now_ms=1).close()
        for f in path.parent.iterdir():
            f.chmod(existing)
    outbox = Outbox.open(path, device_id="TAB-0001", now_ms=1)
    try:
        found = {f.name: mode(f) for f in path.parent.iterdir()}
    finally:
        outbox.close()
    assert {"outbox.db", "outbox.db-wal", "outbox.db-shm"} <= set(found)
    assert (mode(path.parent), found) == (0o700, dict.fromkeys(found, 0o600))


def test_usb_spool_directories_receipts_and_entries_are_private(umask: int, tmp_path: Path) -> None:
    state = tmp_path / "usb" / "state"
    spool = Spool.open(state / "spool", state / "receipts.jsonl")
    batch = spool.store_batch("TAB-0001", 1, b"sealed envelope")
    custody = spool.store_custody(b"custody record", device_id="TAB-0001", pulled_at_ms=1)
    rejected = spool.reject(batch, {"code": "probe"})
    spool._append_receipt({"device_id": "TAB-0002", "seq": 1, "batch_hash": "00" * 32})
    dirs = [tmp_path / "usb", state, state / "spool", spool.batches_dir, spool.custody_dir, spool.rejected_dir]
    files = [custody.path, rejected, *spool.rejected_dir.iterdir(), state / "receipts.jsonl"]
    assert {str(d): mode(d) for d in dirs} == {str(d): 0o700 for d in dirs}
    assert {str(f): mode(f) for f in files} == {str(f): 0o600 for f in files}


def test_a_receipt_log_left_world_readable_is_narrowed_when_the_spool_opens(umask: int, tmp_path: Path) -> None:
    log = tmp_path / "receipts.jsonl"
    log.write_text("")
    log.chmod(0o644)
    Spool.open(tmp_path / "spool", log)
    assert mode(log) == 0o600


# ---- the shared piece itself ----------------------------------------------------------------------------------


def test_make_private_dir_creates_every_missing_level_0700_and_leaves_existing_ones(umask: int,
                                                                                     tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    made = make_private_dir(tmp_path / "a" / "b" / "c")
    assert made.is_dir()
    assert [mode(tmp_path), mode(tmp_path / "a"), mode(tmp_path / "a/b"), mode(made)] == [0o755, 0o700, 0o700, 0o700]


def test_make_private_dir_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        make_private_dir(tmp_path / "f")


@pytest.mark.parametrize("umask_value", [0o022, 0o000, 0o277], ids=["022", "000", "277"])
def test_private_files_are_exactly_0600_whatever_the_umask(umask_value: int, tmp_path: Path) -> None:
    old = os.umask(umask_value)
    try:
        touch_private(tmp_path / "new")
        make_private_dir(tmp_path / "dir")
        prepare_private_sqlite(tmp_path / "db" / "x.db")
    finally:
        os.umask(old)
    assert (mode(tmp_path / "new"), mode(tmp_path / "dir"), mode(tmp_path / "db"), mode(tmp_path / "db/x.db")) == (
        0o600, 0o700, 0o700, 0o600)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_open_private_refuses_what_is_not_a_regular_file(kind: str, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("secret")
    target.chmod(0o644)
    path = tmp_path / "p"
    {"symlink": lambda: path.symlink_to(target), "fifo": lambda: os.mkfifo(path),
     "directory": path.mkdir}[kind]()
    with pytest.raises(OSError):
        os.close(open_private(path, os.O_WRONLY if kind != "directory" else os.O_RDONLY))
    assert mode(target) == 0o644  # nothing followed and changed


@pytest.mark.parametrize("name", [":memory:", ""])
def test_an_in_memory_database_gets_no_file(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    prepare_private_sqlite(name)
    assert list(tmp_path.iterdir()) == []
