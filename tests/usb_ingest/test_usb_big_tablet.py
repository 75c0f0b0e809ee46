"""A big tablet on the USB road: forwarding starts while the pull still reads, and an unplug at any point resumes.

The real daemon in the umockdev bed and a real gateway (``test_usb_udev_e2e``'s
road), groups of 20 batches: every sealed group wakes the forwarder, so the
first receipt is logged before the pull has finished; unplugged in the middle
and plugged again, every batch reaches the gateway exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import test_usb_udev_e2e as e2e
from .test_usb_udev_e2e import Road, expected_rows, export_image

enrolled = e2e.enrolled  # fixtures of the e2e road, used here as they are
road = e2e.road

pytestmark = pytest.mark.umockdev

N = 300
GROUP = 20


def index_of(lines: list[dict[str, object]], event: str, **match: object) -> int:
    return next(i for i, line in enumerate(lines)
                if line.get("event") == event and all(line.get(k) == v for k, v in match.items()))


async def test_the_first_batches_are_forwarded_while_the_pull_still_reads(road: Road, tmp_path: Path) -> None:
    road.config.write_text(f"spool_group_batches = {GROUP}\n" + road.config.read_text())
    batches = road.enrolled.batches("TAB-0001", range(1, N + 1))
    image = export_image(tmp_path / "big.img", road.enrolled, "TAB-0001", batches)
    daemon = await road.start_daemon()
    stick = road.plug(image, "TAB-0001")
    [finished] = await daemon.wait_for("usb.pull.finished", source=stick.devnode)
    assert (finished["outcome"], finished["spooled"]) == ("complete", N)
    first_receipt = index_of(daemon.lines, "usb.forward.delivered")  # the forwarder woke on a sealed group
    assert first_receipt < index_of(daemon.lines, "usb.pull.finished", source=stick.devnode)
    assert first_receipt > index_of(daemon.lines, "usb.batch.spooled", seq=GROUP)  # ... never before a seal
    await daemon.wait_for("usb.forward.delivered", n=N)
    await daemon.wait_for("usb.custody.delivered")
    assert road.gateway_rows() == expected_rows(batches, "TAB-0001")
    assert road.custody_rows() == [("ST-01", "TAB-0001", N)]  # batches forwarded meanwhile are still named


async def test_a_big_tablet_unplugged_mid_pull_resumes_without_duplicates(road: Road, tmp_path: Path) -> None:
    road.config.write_text(f"spool_group_batches = {GROUP}\n" + road.config.read_text())
    batches = road.enrolled.batches("TAB-0001", range(1, N + 1))
    image = export_image(tmp_path / "big.img", road.enrolled, "TAB-0001", batches)
    daemon = await road.start_daemon()
    stick = road.plug(image, "TAB-0001")
    await daemon.wait_for("usb.batch.spooled", device_id="TAB-0001", seq=GROUP)
    road.bed.unplug(stick)
    [first] = await daemon.wait_for("usb.pull.finished", source=stick.devnode)
    assert first["outcome"] == "interrupted" and GROUP <= first["spooled"] < N, first
    again = road.plug(image, "TAB-0001", disk=stick.handle)
    second = (await daemon.wait_for("usb.pull.finished", n=2, source=again.devnode))[-1]
    assert second["outcome"] == "complete"
    assert first["spooled"] + second["spooled"] == N
    await daemon.wait_for("usb.forward.delivered", n=N)
    assert road.gateway_rows() == expected_rows(batches, "TAB-0001")  # each batch once
    assert not any(line["duplicate"] for line in daemon.find("usb.forward.delivered"))
