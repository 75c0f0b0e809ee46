"""``gateway.device_slots``: the per-device in-flight cap held by record locks, across real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gateway.device_slots import DeviceSlots, make_lock_file

# A process that takes one slot of a device on the inherited lock file, says so, and holds it until stdin closes.
HOLDER = """
import sys
from gateway.device_slots import DeviceSlots
slots = DeviceSlots(int(sys.argv[2]), int(sys.argv[1]))
print("took" if slots.take(sys.argv[3]) is not None else "refused", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def lock_fd() -> Iterator[int]:
    fd = make_lock_file()
    yield fd
    os.close(fd)


def holder(lock_fd: int, cap: int, device_id: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_fd), str(cap), device_id],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, pass_fds=(lock_fd,),
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_slots_held_by_other_processes_count_and_a_killed_holder_frees_its_slot(lock_fd: int) -> None:
    mine = DeviceSlots(2, lock_fd)
    one, said_one = holder(lock_fd, 2, "TAB-0001")
    two, said_two = holder(lock_fd, 2, "TAB-0001")
    try:
        assert (said_one, said_two) == ("took", "took")
        assert mine.take("TAB-0001") is None  # both slots are held elsewhere
        assert mine.take("TAB-0002") is not None  # another device is not affected
        third, said = holder(lock_fd, 2, "TAB-0001")
        third.kill()
        third.wait()
        assert said == "refused"
        one.kill()  # SIGKILL: the kernel releases its lock
        one.wait()
        slot = mine.take("TAB-0001")
        assert slot is not None
        assert mine.take("TAB-0001") is None  # this process now holds one, the other holder the second
        mine.give_back("TAB-0001", slot)
        assert mine.take("TAB-0001") is not None
    finally:
        for proc in (one, two):
            proc.kill()
            proc.wait()


def test_within_one_process_the_cap_counts_its_own_requests(lock_fd: int) -> None:
    slots = DeviceSlots(2, lock_fd)  # one process cannot conflict with its own locks: it counts them itself
    first, second = slots.take("TAB-0001"), slots.take("TAB-0001")
    assert first is not None and second is not None and first != second
    assert slots.take("TAB-0001") is None
    slots.give_back("TAB-0001", first)
    assert slots.take("TAB-0001") == first
    assert slots.local["TAB-0001"] == 2


@pytest.mark.parametrize("shared", [False, True], ids=["one process", "lock file"])
def test_a_cap_of_zero_refuses_every_request(shared: bool, lock_fd: int) -> None:
    assert DeviceSlots(0, lock_fd if shared else None).take("TAB-0001") is None
