"""State directories only the service's user can enter (0700) and files only it can read (0600).

Census sheets, keys, custody records and personal data live in such files. A
mode passed to ``mkdir``/``open`` is masked by the umask (a umask of 000 or
022 must not widen anything, a umask of 0277 must not make a file unwritable),
so every function here sets the exact mode on the new directory or on the open
descriptor (``fchmod``), whatever the umask.

* ``make_private_dir``: the directory and every *missing* parent are created
  0700. A directory that already exists is left as it is (it may be ``/tmp`` or
  a systemd ``StateDirectory=``); the files inside it are private anyway.
* ``open_private``: ``os.open`` that creates the file 0600 and narrows an
  existing file of ours that lets the group or others in. A symbolic link or
  anything but a regular file is refused (``O_NOFOLLOW``, ``O_NONBLOCK`` so a
  FIFO cannot block).
* ``prepare_private_sqlite``: SQLite creates a new database file 0644 and its
  ``-wal``/``-shm`` files with the database file's mode, so the database file
  is created (or narrowed) 0600 *before* the first connection, and leftover
  ``-wal``/``-shm`` files are narrowed too.

Atomic replacement of a private file is ``keys.files.atomic_write`` (0600 from
birth); this module does not copy it. Errors are ``OSError`` for the caller to
wrap in its own tree.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "SQLITE_SIDE_FILES",
    "make_private_dir",
    "open_private",
    "prepare_private_sqlite",
    "touch_private",
]

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def make_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and each missing parent with mode 0700; return it as a ``Path``.

    Existing directories are not changed. Raises ``NotADirectoryError`` when
    ``path`` exists and is not a directory, other ``OSError`` as ``mkdir`` does.
    """
    target = Path(path)
    missing: list[Path] = []
    here = target
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # created by someone else meanwhile: not ours to change
        os.chmod(directory, PRIVATE_DIR_MODE)  # the umask may have taken bits away
    if not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(target))
    return target


def open_private(path: str | os.PathLike[str], flags: int = os.O_RDONLY) -> int:
    """``os.open(path, flags | O_CREAT)`` for a private file: created 0600, a wider one of ours narrowed.

    Returns the descriptor (the caller closes it). ``O_EXCL``, ``O_APPEND`` and
    the like in ``flags`` are kept. Raises ``OSError`` (``ELOOP`` for a
    symbolic link, ``EINVAL`` for something that is not a regular file).
    """
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, PRIVATE_FILE_MODE)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        if stat.S_IMODE(st.st_mode) != PRIVATE_FILE_MODE:
            os.fchmod(fd, PRIVATE_FILE_MODE)
        if not flags & os.O_NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def touch_private(path: str | os.PathLike[str]) -> None:
    """Create ``path`` empty with mode 0600 if missing; narrow it to 0600 if it exists."""
    os.close(open_private(path))


def prepare_private_sqlite(path: str | os.PathLike[str]) -> None:
    """Make a SQLite database's directory (0700 where created) and files (0600) private before connecting.

    An in-memory database (``:memory:``, or the empty name of a temporary one) has no files: nothing is done.
    """
    if os.fspath(path) in ("", ":memory:"):
        return
    db = Path(path)
    make_private_dir(db.parent)
    touch_private(db)
    for suffix in SQLITE_SIDE_FILES:
        side = db.with_name(db.name + suffix)
        if side.exists():
            touch_private(side)
