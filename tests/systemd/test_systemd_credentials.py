"""Key files handed over by ``LoadCredential=``, in both forms systemd writes them.

systemd 252 (Debian 12) keeps credentials on ramfs, which has no ACLs: each
file is 0400 and owned by the service user (the other tests use that form).
Newer systemd (254+, on tmpfs) leaves the file 0400 root-owned and adds a
POSIX ACL entry ``user:<service>:r--``; ``stat`` then shows the ACL mask in
the group bits (mode 0440) although no group can read the file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import struct
from pathlib import Path

from tests.gateway.harness import World

from .service_harness import NotifySocket, gateway_process, wait_ready, write_gateway_files

_ACL_UNDEFINED_ID = 0xFFFFFFFF
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_MASK, _ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20


def add_user_read_acl(path: Path, uid: int) -> None:
    """What systemd's ``fd_add_uid_acl_permission(fd, uid, ACL_READ)`` leaves on a 0400 file."""
    entries = [
        (_ACL_USER_OBJ, 4, _ACL_UNDEFINED_ID),
        (_ACL_USER, 4, uid),
        (_ACL_GROUP_OBJ, 0, _ACL_UNDEFINED_ID),
        (_ACL_MASK, 4, _ACL_UNDEFINED_ID),
        (_ACL_OTHER, 0, _ACL_UNDEFINED_ID),
    ]
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    os.setxattr(path, "system.posix_acl_access", blob)


async def start_and_stop(world: World, tmp_path: Path, *, acl: bool) -> None:
    files = write_gateway_files(world, tmp_path)
    if acl:
        for f in files.credentials.iterdir():
            add_user_read_acl(f, 65534)
            assert stat.S_IMODE(f.stat().st_mode) == 0o440
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        async with gateway_process(files, notify=ns.path) as proc:
            await wait_ready(ns, proc, files)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        ns.close()


async def test_gateway_starts_with_credentials_as_systemd_252_writes_them(world: World, tmp_path: Path) -> None:
    await start_and_stop(world, tmp_path, acl=False)


async def test_gateway_starts_with_credentials_as_newer_systemd_writes_them(world: World, tmp_path: Path) -> None:
    await start_and_stop(world, tmp_path, acl=True)
