"""The systemd notification protocol (sd_notify(3)), without libsystemd.

``Notifier.from_env()`` reads ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``; with no
socket every call is a no-op, so the services run the same outside systemd.
``watchdog_loop`` pings from the event loop itself: if the loop hangs, the
pings stop and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass

__all__ = ["Notifier"]


@dataclass(frozen=True, slots=True)
class Notifier:
    address: str | None
    watchdog_usec: int | None
    # never wait for a full receiver queue (a gateway worker telling its supervisor): drop, report False
    nonblocking: bool = False

    @classmethod
    def from_env(cls) -> Notifier:
        addr = os.environ.get("NOTIFY_SOCKET") or None
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        wd: int | None = None
        # WATCHDOG_PID names the process systemd watches: a child that inherited
        # the environment must not ping on its parent's behalf. "0" means off.
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            wd = int(usec)
        return cls(addr, wd)

    def send(self, message: str) -> bool:
        """Send one notification; False when it could not be delivered (no socket, or nobody there)."""
        if not self.address:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        flags = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | (socket.SOCK_NONBLOCK if self.nonblocking else 0)
        with socket.socket(socket.AF_UNIX, flags) as s:
            try:
                s.connect(addr)
                s.sendall(message.encode("utf-8"))
            except OSError:
                # systemd gone or socket not there: notification is best effort by definition.
                return False
        return True

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    @property
    def watchdog_interval_s(self) -> float | None:
        return None if not self.watchdog_usec else self.watchdog_usec / 1_000_000 / 2

    async def watchdog_loop(self) -> None:
        """Ping WATCHDOG=1 at half the configured interval for as long as the loop runs."""
        interval = self.watchdog_interval_s
        if interval is None or not self.address:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)
