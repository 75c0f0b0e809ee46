"""UdevDeviceSource on the real pyudev/libudev stack, devices simulated by umockdev (see umockdev_bed)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .umockdev_bed import SourceProbe, UmockdevBed

pytestmark = pytest.mark.umockdev


def test_existing_reports_stick_plugged_before_start(usb_bed: UmockdevBed, raw_image: Path) -> None:
    stick = usb_bed.plug(raw_image, serial="PRE0001", vendor="04e8", product="6860")
    probe = SourceProbe(usb_bed)
    by_node = {e.devnode: e for e in probe.existing}
    part, disk = by_node[stick.devnode], by_node[stick.disk_node]
    assert part.action == "add" and part.is_candidate
    assert part.sys_path == stick.sys_path
    assert (part.fs_type, part.fs_label) == ("vfat", "SANAQEXPORT")
    assert (part.vendor_id, part.product_id, part.serial) == ("04e8", "6860", "PRE0001")
    assert part.interface_classes == ("08",)
    assert (disk.fs_type, disk.is_candidate, disk.serial) == (None, False, "PRE0001")
    assert probe.logged("usb.udev.enumerated")[0]["candidates"] == 1
    probe.stop()


def test_hotplug_add_then_remove_of_the_same_device(usb_bed: UmockdevBed, raw_image: Path) -> None:
    probe = SourceProbe(usb_bed)
    assert not any(e.is_candidate for e in probe.existing)
    stick = usb_bed.plug(raw_image, serial="HOT0001")
    added = probe.next_event(stick.devnode)
    assert added.action == "add" and added.is_candidate and added.serial == "HOT0001"
    usb_bed.unplug(stick)
    removed = probe.next_event(stick.devnode, "remove")
    assert (removed.devnode, removed.sys_path, removed.fs_label) == (added.devnode, added.sys_path, "SANAQEXPORT")
    # the disk goes after its partition, as the kernel sends it
    assert probe.next_event(stick.disk_node, "remove").devnode == stick.disk_node
    again = usb_bed.plug(raw_image, serial="HOT0002", disk=stick.handle)
    assert probe.next_event(again.devnode, "add").serial == "HOT0002"
    lines = probe.stop()
    assert [line["event"] for line in lines[-2:]] == ["usb.udev.stopped", "probe.stopped"]


@pytest.mark.parametrize(
    ("fs_type", "label", "partitioned", "candidate"),
    [
        ("vfat", "SANAQEXPORT", True, True),
        ("vfat", "SANAQEXPORT", False, True),  # unpartitioned stick: the filesystem is on the disk
        ("vfat", "OTHER", True, False),
        ("vfat", "sanaqexport", True, False),  # FAT labels are upper case; no folding
        ("vfat", "SANAQEXPORT2", True, False),
        ("vfat", None, True, False),
        ("exfat", "SANAQEXPORT", True, False),
        ("ext4", "SANAQEXPORT", True, False),
        (None, None, True, False),
    ],
)
def test_candidate_rule(
    usb_bed: UmockdevBed, raw_image: Path, fs_type: str | None, label: str | None, partitioned: bool, candidate: bool
) -> None:
    probe = SourceProbe(usb_bed)
    stick = usb_bed.plug(raw_image, fs_type=fs_type, label=label, partitioned=partitioned)
    event = probe.next_event(stick.devnode)
    assert event.action == "add"  # non-candidates are reported too: the daemon shows them to the technician
    assert (event.fs_type, event.fs_label) == (fs_type, label)
    assert event.is_candidate is candidate
    probe.stop()


@pytest.mark.parametrize(
    ("serial", "vendor", "product", "expected"),
    [
        ("R58M123ABC", "04e8", "6860", ("04e8", "6860", "R58M123ABC")),
        ("R58M123ABC", "04E8", "686A", ("04e8", "686a", "R58M123ABC")),  # ids normalised to lower case
        (None, "18d1", "4ee1", ("18d1", "4ee1", None)),  # no serial attribute
        ("BAD\x01SER", "04e8", "6860", ("04e8", "6860", None)),  # control character
        ("S" * 127, "04e8", "6860", ("04e8", "6860", None)),  # longer than a USB string descriptor
        ("S" * 126, "04e8", "6860", ("04e8", "6860", "S" * 126)),
        ("ABC", "4e8", "68600", (None, None, "ABC")),  # ids not four hex digits
        ("ABC", "zzzz", "6860", (None, "6860", "ABC")),
    ],
)
def test_usb_hints(
    usb_bed: UmockdevBed,
    raw_image: Path,
    serial: str | None,
    vendor: str,
    product: str,
    expected: tuple[str | None, str | None, str | None],
) -> None:
    stick = usb_bed.plug(raw_image, serial=serial, vendor=vendor, product=product)
    probe = SourceProbe(usb_bed)
    [event] = [e for e in probe.existing if e.devnode == stick.devnode]
    assert (event.vendor_id, event.product_id, event.serial) == expected
    assert event.hints.serial == (expected[2] or "")
    probe.stop()


@pytest.mark.parametrize(
    ("extra_hid", "bus", "classes"),
    [
        (False, "usb", ("08",)),
        (True, "usb", ("08", "03")),  # a "tablet" that can also type: the daemon's policy refuses it
        (False, "ata", ()),  # no USB parent, no hints at all
    ],
)
def test_interface_classes(
    usb_bed: UmockdevBed, raw_image: Path, extra_hid: bool, bus: str, classes: tuple[str, ...]
) -> None:
    probe = SourceProbe(usb_bed)
    stick = usb_bed.plug(raw_image, extra_hid=extra_hid, bus=bus)
    event = probe.next_event(stick.devnode)
    assert event.interface_classes == classes
    assert event.has_hid_interface is extra_hid
    if bus != "usb":
        assert (event.vendor_id, event.product_id, event.serial) == (None, None, None)
    probe.stop()


def test_a_device_that_cannot_be_described_is_skipped_not_fatal(usb_bed: UmockdevBed, raw_image: Path) -> None:
    usb_bed.plug(raw_image, with_devname=False)  # a partition without a device node
    probe = SourceProbe(usb_bed)
    assert [e.devnode for e in probe.existing] == ["/dev/sdb"]
    usb_bed.plug(raw_image, with_devname=False)
    good = usb_bed.plug(raw_image, serial="GOOD0001")
    assert probe.next_event(good.devnode).serial == "GOOD0001"
    skipped = probe.logged("usb.udev.device_skipped")
    assert len(skipped) == 2 and all(s["level"] == "warning" and s["error"] == "ValueError" for s in skipped)
    probe.stop()


_READ_NODE = """
import hashlib, json, os, stat, sys
st = os.stat(sys.argv[1])
with open(sys.argv[1], "rb") as f:
    data = f.read()
    size = f.seek(0, os.SEEK_END)
print(json.dumps({"blk": stat.S_ISBLK(st.st_mode), "size": size,
                  "sha256": hashlib.sha256(data).hexdigest()}))
"""


def test_device_node_reads_the_image(usb_bed: UmockdevBed, raw_image: Path) -> None:
    stick = usb_bed.plug(raw_image)
    child = usb_bed.spawn([sys.executable, "-c", _READ_NODE, stick.devnode], stdin=subprocess.DEVNULL)
    out, _ = child.communicate(timeout=20)
    seen = json.loads(out)
    assert seen["blk"] is True  # the preload shows the node as a block device
    # st_size: the kernel says 0 for a block device, umockdev the image size; the size is found by seeking
    assert seen["size"] == raw_image.stat().st_size
    assert seen["sha256"] == hashlib.sha256(raw_image.read_bytes()).hexdigest()
