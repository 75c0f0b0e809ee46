"""Run a Python module under the kernel filters systemd would install for a unit (test support).

systemd 252 turns these unit settings into seccomp filters and process
attributes just before it executes the service; this launcher rebuilds them
with libseccomp (through ctypes), from the unit file itself, and then runs the
module in the same process::

    SystemCallFilter=          allow list; anything else kills the process
                               (SIGSYS), as with no SystemCallErrorNumber=
    SystemCallArchitectures=native
    RestrictAddressFamilies=   socket() of another family fails EAFNOSUPPORT
    MemoryDenyWriteExecute=yes mmap(W|X), mprotect/pkey_mprotect(+X),
                               shmat(SHM_EXEC) fail EPERM
    NoNewPrivileges=yes, CapabilityBoundingSet= (empty, all capabilities
    dropped even though the tests run as root), UMask=
    User=, PrivateUsers=       a user namespace in which the process is uid and
                               gid 61000, mapped onto the caller's own ids (so
                               it still owns the test's files); code that acts
                               differently for root (SQLite fchown()s its
                               journals when euid is 0) acts as the service would

Settings that need the service manager (mount namespaces: ProtectSystem=,
ProtectHome=, PrivateTmp=, ProcSubset=; DevicePolicy=) are not emulated here.

Usage (the group table is ``systemd-analyze syscall-filter`` output, read by
the parent so nothing here needs to execute a program)::

    python -m tests.systemd.sandbox_launch UNIT GROUPS_FILE -m MODULE [ARGS...]
    python -m tests.systemd.sandbox_launch UNIT GROUPS_FILE -c CODE
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import runpy
import socket
import sys
from pathlib import Path

__all__ = ["parse_groups", "resolve_filter", "unit_settings"]

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_MASKED_EQ = 7
PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
CLONE_NEWUSER = 0x10000000
SERVICE_ID = 61000
AF_LIMIT = 64  # above every AF_* constant the kernel knows (AF_MAX is 46 in 6.x)


def scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def unit_settings(text: str) -> dict[str, list[str]]:
    """``key -> [values in order]`` of a unit file (comments and sections dropped; no continuation lines)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def parse_groups(listing: str) -> dict[str, list[str]]:
    """``systemd-analyze syscall-filter`` output -> ``{"@group": [member, ...]}`` (members may be groups)."""
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif not line.strip() or not line.startswith(" "):
            current = None
        elif current is not None and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def _expand(item: str, groups: dict[str, list[str]], seen: set[str]) -> set[str]:
    if not item.startswith("@"):
        return {item}
    if item not in groups:
        raise SystemExit(f"sandbox_launch: unknown system call group {item}")
    if item in seen:
        return set()
    seen.add(item)
    names: set[str] = set()
    for member in groups[item]:
        names |= _expand(member, groups, seen)
    return names


def resolve_filter(lines: list[str], groups: dict[str, list[str]]) -> set[str]:
    """The allowed system calls of ``SystemCallFilter=`` lines (systemd's rules: the first line
    sets allow-list mode and adds @default; ``~`` lines remove; an empty value resets)."""
    allowed: set[str] | None = None
    for value in lines:
        if not value:
            allowed = None
            continue
        invert = value.startswith("~")
        items = value.lstrip("~").split()
        names: set[str] = set()
        for item in items:
            names |= _expand(item, groups, set())
        if allowed is None:
            if invert:
                raise SystemExit("sandbox_launch: deny-list filters are not emulated")
            allowed = _expand("@default", groups, set())
        allowed = allowed - names if invert else allowed | names
    if allowed is None:
        raise SystemExit("sandbox_launch: the unit has no SystemCallFilter=")
    return allowed


class _Seccomp:
    def __init__(self) -> None:
        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        self.lib = ctypes.CDLL(name, use_errno=True)
        self.lib.seccomp_init.restype = ctypes.c_void_p
        self.lib.seccomp_init.argtypes = [ctypes.c_uint32]
        self.lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp),
        ]
        self.lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        self.lib.seccomp_load.argtypes = [ctypes.c_void_p]
        self.lib.seccomp_release.argtypes = [ctypes.c_void_p]

    def nr(self, name: str) -> int | None:
        n = self.lib.seccomp_syscall_resolve_name(name.encode())
        return None if n == -1 else n  # __NR_SCMP_ERROR: unknown to libseccomp

    def load(self, default: int, rules: list[tuple[int, str, list[tuple[int, int, int, int]]]]) -> None:
        ctx = self.lib.seccomp_init(default)
        if not ctx:
            raise OSError("seccomp_init failed")
        try:
            for action, name, cmps in rules:
                nr = self.nr(name)
                if nr is None:
                    continue
                arr = (_ArgCmp * max(1, len(cmps)))(*[_ArgCmp(*c) for c in cmps])
                # Calls this architecture does not have are refused by libseccomp; systemd skips them too.
                self.lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr)
            rc = self.lib.seccomp_load(ctx)
            if rc != 0:
                raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")
        finally:
            self.lib.seccomp_release(ctx)


def _families(values: list[str]) -> set[int]:
    allowed: set[int] = set()
    for value in values:
        for name in value.split():
            allowed.add(int(getattr(socket, name)))
    return allowed


def _become_service_user(libc: ctypes.CDLL) -> None:
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{SERVICE_ID} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{SERVICE_ID} {gid} 1")


def apply(unit_text: str, groups: dict[str, list[str]]) -> None:
    settings = unit_settings(unit_text)
    libc = ctypes.CDLL(None, use_errno=True)
    if "User" in settings:
        _become_service_user(libc)
    umask = settings.get("UMask", ["0022"])[-1]
    os.umask(int(umask, 8))
    if settings.get("CapabilityBoundingSet", ["x"])[-1] == "":
        cap = 0
        while libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
            cap += 1
        # capset(2) with all-zero sets: what an unprivileged service user holds.
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)()
        if libc.syscall(126 if os.uname().machine == "x86_64" else 91, header, data) != 0:
            raise OSError(ctypes.get_errno(), "capset")
    if settings.get("NoNewPrivileges", ["no"])[-1] == "yes" and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    seccomp = _Seccomp()
    if settings.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        wx = PROT_WRITE | PROT_EXEC
        seccomp.load(
            SCMP_ACT_ALLOW,
            [
                (scmp_act_errno(errno.EPERM), "mmap", [(2, SCMP_CMP_MASKED_EQ, wx, wx)]),
                (scmp_act_errno(errno.EPERM), "mprotect", [(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)]),
                (scmp_act_errno(errno.EPERM), "pkey_mprotect", [(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)]),
                (scmp_act_errno(errno.EPERM), "shmat", [(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)]),
            ],
        )
    if "RestrictAddressFamilies" in settings:
        allowed = _families(settings["RestrictAddressFamilies"])
        eaf = scmp_act_errno(errno.EAFNOSUPPORT)
        rules = [(eaf, "socket", [(0, SCMP_CMP_EQ, f, 0)]) for f in range(AF_LIMIT) if f not in allowed]
        rules.append((eaf, "socket", [(0, SCMP_CMP_GE, AF_LIMIT, 0)]))
        seccomp.load(SCMP_ACT_ALLOW, rules)
    if "SystemCallFilter" in settings:
        names = resolve_filter(settings["SystemCallFilter"], groups)
        # libseccomp's default context holds only the native architecture, which is
        # SystemCallArchitectures=native: calls of another ABI hit the bad-arch action (kill).
        seccomp.load(SCMP_ACT_KILL_PROCESS, [(SCMP_ACT_ALLOW, n, []) for n in sorted(names)])


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] not in ("-m", "-c"):
        raise SystemExit(__doc__)
    unit, groups_file, mode, target, *rest = argv
    apply(Path(unit).read_text(), parse_groups(Path(groups_file).read_text()))
    if mode == "-c":
        sys.argv = ["-c", *rest]
        exec(compile(target, "<sandbox>", "exec"), {"__name__": "__main__"})
        return
    sys.argv = [target, *rest]
    runpy.run_module(target, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
