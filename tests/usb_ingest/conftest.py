"""Fixtures for the USB ingest tests: one umockdev bed for the session, reset after every test.

The bed runs in a child process (see ``umockdev_bed``), so these tests run in
the ordinary ``pytest`` invocation - no ``umockdev-wrapper`` around pytest. If
umockdev, its GObject introspection data or python3-gi is missing, every test
using ``usb_bed`` fails (never skips) with the reason and ``make setup``.

Headroom for event sockets: every libudev monitor inside the bed receives the
bed's uevents on an AF_UNIX datagram socket, whose queue holds
``net.unix.max_dgram_qlen`` datagrams (10 by default); libumockdev aborts the
bed when a program under test lets its queue fill (e.g. the daemon busy while
two sticks are plugged). When the fixture may (root), it raises the limit to
512 for the sockets created during the session and restores the old value at
the end; sockets keep the limit they were created with. If the bed dies anyway,
the test that killed it fails and the next test gets a fresh bed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .station_fixtures import _logs_unfiltered, env, gw, template  # noqa: F401 - fixtures, registered here
from .umockdev_bed import BedUnavailable, UmockdevBed

_DGRAM_QLEN = Path("/proc/sys/net/unix/max_dgram_qlen")
_WANTED_QLEN = 512


@contextlib.contextmanager
def _dgram_queue_headroom() -> Iterator[None]:
    try:
        old = int(_DGRAM_QLEN.read_text())
    except (OSError, ValueError):
        yield
        return
    raised = False
    if old < _WANTED_QLEN and os.access(_DGRAM_QLEN, os.W_OK):
        with contextlib.suppress(OSError):
            _DGRAM_QLEN.write_text(str(_WANTED_QLEN))
            raised = True
    try:
        yield
    finally:
        if raised:
            with contextlib.suppress(OSError):
                _DGRAM_QLEN.write_text(str(old))


class _BedHolder:
    """The session's bed; replaced when a test killed it."""

    def __init__(self) -> None:
        self.bed: UmockdevBed | None = None

    def get(self) -> UmockdevBed:
        if self.bed is None or not self.bed.alive:
            if self.bed is not None:
                self.bed.close()
            try:
                self.bed = UmockdevBed.start()
            except BedUnavailable as e:
                pytest.fail(f"umockdev test bed unavailable: {e}", pytrace=False)
        return self.bed


@pytest.fixture(scope="session")
def _bed_holder() -> Iterator[_BedHolder]:
    holder = _BedHolder()
    with _dgram_queue_headroom():
        try:
            yield holder
        finally:
            if holder.bed is not None:
                holder.bed.close()


@pytest.fixture
def usb_bed(_bed_holder: _BedHolder) -> Iterator[UmockdevBed]:
    """The bed, empty; after the test its children are killed and every stick unplugged."""
    bed = _bed_holder.get()
    yield bed
    bed.end_children()
    if not bed.alive:
        pytest.fail(f"the umockdev bed died during the test (rc={bed.proc.returncode}); "
                    "a monitor inside it stopped draining its events", pytrace=False)
    bed.reset()


@pytest.fixture
def raw_image(tmp_path: Path) -> Path:
    """1 MiB of random bytes: what a device node should read back (udev does not look inside)."""
    path = tmp_path / "raw.img"
    path.write_bytes(os.urandom(1024 * 1024))
    return path
