"""The per-device in-flight cap (``limits.max_inflight_per_device``), in one process or across workers.

``DeviceSlots`` counts a device's batch requests being processed and refuses
one more (429 ``too-many-requests``) at the cap. With one process (``server.workers
= 1``) the count is an in-process ``Counter``, as it always was.

With several worker processes the supervisor hands every worker the same lock
file (an unlinked ``memfd``), and a request holds one *slot*: an exclusive
POSIX record lock (``fcntl.lockf``, non-blocking) on one byte of that file,
at offset ``bucket(device) * cap + slot`` for ``slot`` in ``0 .. cap-1``.
A worker tries the slots in order and takes the first that no process holds;
when all ``cap`` bytes are locked the request is refused. Record locks belong
to the process, so:

* a worker that dies (even by SIGKILL) releases all its slots in the kernel:
  no slot leaks, nothing to clean up;
* one process cannot conflict with itself, so each worker also remembers the
  slots it holds (``_held``) and skips them; its in-process ``Counter`` is kept
  too (the cap also holds inside the worker without a system call);
* a worker never closes another descriptor of the lock file (closing one would
  drop every lock the process holds; ``fcntl`` semantics).

``bucket`` is 48 bits of BLAKE2b of the device id. Two devices whose buckets
collide share one set of ``cap`` slots: together they can have at most
``cap`` requests in flight, and the third gets a 429 with ``Retry-After`` and
retries; nothing is lost or mixed. With 48 bits the chance that some pair of
1 million devices collides at all is about 2 in 1000, and such a pair must
also sync at the same moment to notice. ``cap`` is at most
``config.MAX_INFLIGHT_PER_DEVICE`` so that every offset fits in a 64-bit ``off_t``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections import Counter

__all__ = ["DeviceSlots", "make_lock_file"]

_BUCKET_BITS = 48


def make_lock_file() -> int:
    """The supervisor's lock file: an anonymous in-memory file, inherited by the workers (not close-on-exec)."""
    fd = os.memfd_create("sanaq-gateway-device-slots", 0)
    os.set_inheritable(fd, True)
    return fd


class DeviceSlots:
    """Take and give back one in-flight slot of a device; ``lock_fd`` None: this process only."""

    def __init__(self, cap: int, lock_fd: int | None = None) -> None:
        self.cap = cap
        self.local: Counter[str] = Counter()
        self._lock_fd = lock_fd
        self._held: set[int] = set()

    @property
    def shared(self) -> bool:
        return self._lock_fd is not None

    def take(self, device_id: str) -> int | None:
        """A slot for one more request of ``device_id``, or None at the cap (the caller answers 429).

        Returns the byte offset held (``-1`` when not shared); pass it to ``give_back``.
        """
        if self.local[device_id] >= self.cap:
            return None
        offset = -1
        if self._lock_fd is not None:
            found = self._lock_free_slot(device_id)
            if found is None:
                return None
            offset = found
        self.local[device_id] += 1
        return offset

    def give_back(self, device_id: str, offset: int) -> None:
        self.local[device_id] -= 1
        if self.local[device_id] <= 0:
            del self.local[device_id]
        if self._lock_fd is not None and offset >= 0:
            self._held.discard(offset)
            fcntl.lockf(self._lock_fd, fcntl.LOCK_UN, 1, offset)

    def _lock_free_slot(self, device_id: str) -> int | None:
        assert self._lock_fd is not None
        digest = hashlib.blake2b(device_id.encode("utf-8"), digest_size=8).digest()
        base = (int.from_bytes(digest, "big") >> (64 - _BUCKET_BITS)) * self.cap
        for offset in range(base, base + self.cap):
            if offset in self._held:
                continue
            try:
                fcntl.lockf(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
            except (BlockingIOError, PermissionError):  # EAGAIN / EACCES: another worker holds this slot
                continue
            self._held.add(offset)
            return offset
        return None
