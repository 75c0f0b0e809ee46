"""The technician's view as a person sees it: ``status --watch`` in a real terminal (tmux), tablets under umockdev.

The daemon is the real ``sanaq-usb-ingest run`` inside the umockdev bed, the
gateway real on loopback (``test_usb_udev_e2e``'s road). ``status --watch``
runs in a detached tmux session of 200x60; the test reads the screen with
``tmux capture-pane`` as often as it can while tablets are plugged, pulled,
unplugged mid-read and forwarded, and asserts on the frames:

* before a tablet: "No tablet connected.";
* an unplug mid-read: the screen says the transfer from the tablet (device id
  and the worker's institution) was interrupted, and no frame says "You may
  unplug" for it;
* the whole tablet: while it is read, "Reading <tablet> (institution ...). Do
  not unplug it."; then device id, institution, a full progress bar with batch
  counts and bytes, verified/refused, and "You may unplug the tablet" - and
  whenever a frame says so, every batch is in the spool or at the gateway and
  the custody record is written (checked on disk at that moment);
* forwarding: the spool-by-tablet table ends with every batch forwarded and
  nothing pending.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from . import test_usb_udev_e2e as e2e
from .test_usb_core_cli import COMMAND
from .test_usb_udev_e2e import Road, export_image, now_ms

enrolled = e2e.enrolled  # the enrolled world and the road (daemon in the bed, gateway) as fixtures here
road = e2e.road

pytestmark = pytest.mark.umockdev

TMUX = shutil.which("tmux")
WAIT_S = 60.0
N = 800  # big enough that the pull is still reading when the remove event arrives
INSTITUTION = "AB-000001"  # as enrolled by test_usb_udev_e2e


class Screen:
    """A detached tmux session running one command; ``frame()`` is what a person would see now."""

    def __init__(self, name: str, command: list[str]) -> None:
        assert TMUX is not None, "tmux is needed (make setup installs it)"
        self.name = name
        # the program must size itself from the terminal, not from COLUMNS/LINES inherited from the test runner
        shown = subprocess.list2cmdline(["env", "-u", "COLUMNS", "-u", "LINES", *command])
        subprocess.run([TMUX, "new-session", "-d", "-s", name, "-x", "200", "-y", "60", shown], check=True,
                       timeout=30)
        self.frames: list[str] = []

    def frame(self) -> str:
        done = subprocess.run([TMUX, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True,
                              timeout=30, check=True)
        self.frames.append(done.stdout)
        return done.stdout

    async def until(self, wanted: str) -> str:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            text = await asyncio.to_thread(self.frame)
            if wanted in text:
                return text
            if loop.time() - started > WAIT_S:
                raise AssertionError(f"{wanted!r} not on screen within {WAIT_S} s; last frame:\n{text}")
            await asyncio.sleep(0.02)

    def close(self) -> None:
        subprocess.run([TMUX, "kill-session", "-t", self.name], check=False, timeout=30, capture_output=True)


def custody_and_batches_held(road: Road, seqs: set[int]) -> bool:
    """Every seq in the spool or at the gateway, and a custody record spooled or delivered."""
    spooled = {int(p.name.split(".")[1]) for p in road.spooled_files() if not p.name.startswith(".")}
    at_gateway = {seq for _, seq, _, _ in road.gateway_rows()}
    custody_dir = road.state_dir / "spool" / "custody"
    custody = any(p.suffix == ".sqc" for p in custody_dir.iterdir()) or bool(road.custody_rows())
    return seqs <= spooled | at_gateway and custody


def spool_row(frame: str, device_id: str) -> list[str] | None:
    """The cells of ``device_id``'s row in the "Spool by tablet" table (a row that starts with the device id)."""
    for line in frame.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if line.strip().startswith("│") and cells and cells[0] == device_id:
            return cells
    return None


async def test_status_watch_in_a_terminal_shows_each_step_as_it_is(road: Road, tmp_path: Path) -> None:
    batches = road.enrolled.batches("TAB-0001", range(1, N + 1))
    full = export_image(tmp_path / "full.img", road.enrolled, "TAB-0001", batches)
    daemon = await road.start_daemon()
    screen = Screen(f"sanaq-status-{now_ms()}", [*COMMAND, "status", "--watch", "--interval", "0.1",
                                                 "--config", str(road.config)])
    try:
        first = await screen.until("No tablet connected.")
        assert "Spool by tablet (read from disk now)" in first

        # unplugged while it is read: the pull stops at the next batch; the screen says so, names the tablet
        # and its institution, and never says "You may unplug"
        stick = road.plug(full, "TAB-0001")
        await daemon.wait_for("usb.manifest.verified", device_id="TAB-0001")
        road.bed.unplug(stick)
        [pulled] = await daemon.wait_for("usb.pull.finished", source=stick.devnode)
        assert pulled["outcome"] == "interrupted", pulled
        interrupted = await screen.until("Transfer from TAB-0001")
        assert f"TAB-0001 (institution {INSTITUTION}) interrupted" in " ".join(interrupted.split())
        assert "Plug the tablet in again" in interrupted
        assert not any("You may unplug" in f for f in screen.frames)

        # the whole tablet, plugged again
        again = road.plug(full, "TAB-0001", disk=stick.handle)
        held_when_said: list[bool] = []
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            text = await asyncio.to_thread(screen.frame)
            if "You may unplug the tablet" in text:
                held_when_said.append(await asyncio.to_thread(custody_and_batches_held, road, set(range(1, N + 1))))
                if len(held_when_said) >= 3:
                    break
            assert loop.time() - started < WAIT_S, f"no 'You may unplug' within {WAIT_S} s:\n{text}"
            await asyncio.sleep(0.02)
        assert held_when_said == [True] * len(held_when_said)
        done = " ".join(text.split())
        assert f"All {N} batches from TAB-0001 (institution {INSTITUTION}) are stored on this machine" in done
        lines = text.splitlines()
        at = next(i for i, line in enumerate(lines) if again.devnode in line and "TAB-0001" in line)
        row = lines[at]
        assert "done" in row and INSTITUTION in lines[at + 1], lines[at: at + 2]  # tablet, and under it the institution
        remaining = N - pulled["spooled"]
        assert f"{remaining}/{remaining}" in row, row  # batches read this time, of those it had to read
        assert "━" * 10 in row, row  # the progress bar, full
        assert re.search(r"│ (\d+(\.\d)? [kM]?B)/\1 +│", row), row  # bytes done / total, equal
        # while it read, the screen said so (N batches take long enough to be seen), and never both
        reading = [f for f in (" ".join(f.split()) for f in screen.frames)
                   if f"Reading TAB-0001 (institution {INSTITUTION}). Do not unplug it." in f]
        assert reading, "no frame showed the pull in progress"
        assert not any("You may unplug" in f for f in reading)
        assert all(" reading " in f for f in reading)

        # forwarding: the spool by tablet drains, every batch forwarded, nothing pending
        await daemon.wait_for("usb.forward.delivered", n=N)
        loop_started = loop.time()
        while (cells := spool_row(await asyncio.to_thread(screen.frame), "TAB-0001")) is None or cells[1] != "0" \
                or cells[4] != str(N):
            assert loop.time() - loop_started < WAIT_S, f"spool row never drained: {cells}\n{screen.frames[-1]}"
            await asyncio.sleep(0.05)
        assert cells[5] == "0" and cells[3] == "-", cells  # nothing rejected, no pending age
        assert "Delivered (receipted)" in screen.frames[-1]
    finally:
        screen.close()
        await daemon.stop()
