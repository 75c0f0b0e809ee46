"""DeviceEvent and the hint cleaners: pure values, no udev needed."""

from __future__ import annotations

import pytest

from usb_ingest.events import DeviceEvent, UsbHints, clean_interface_class, clean_serial, clean_usb_id


def _event(**overrides: object) -> DeviceEvent:
    fields: dict[str, object] = {
        "action": "add",
        "devnode": "/dev/sdb1",
        "sys_path": "/sys/devices/x/block/sdb/sdb1",
        "fs_type": "vfat",
        "fs_label": "SANAQEXPORT",
        "vendor_id": "04e8",
        "product_id": "6860",
        "serial": "R58M",
        "interface_classes": ("08",),
    }
    fields.update(overrides)
    return DeviceEvent(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fs_type", "fs_label", "candidate"),
    [
        ("vfat", "SANAQEXPORT", True),
        ("vfat", "SANAQEXPORT ", False),
        ("vfat", "sanaqexport", False),
        ("VFAT", "SANAQEXPORT", False),
        ("msdos", "SANAQEXPORT", False),
        (None, "SANAQEXPORT", False),
        ("vfat", None, False),
    ],
)
def test_is_candidate(fs_type: str | None, fs_label: str | None, candidate: bool) -> None:
    assert _event(fs_type=fs_type, fs_label=fs_label).is_candidate is candidate


@pytest.mark.parametrize(("overrides", "message"), [({"action": "bind"}, "action"), ({"devnode": "sdb1"}, "/dev")])
def test_invalid_events_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _event(**overrides)


def test_hints_for_custody() -> None:
    assert _event().hints == UsbHints("04e8", "6860", "R58M")
    assert _event(vendor_id=None, serial=None).hints == UsbHints("", "6860", "")


@pytest.mark.parametrize(("classes", "hid"), [(("08",), False), (("08", "03"), True), ((), False), (("ff",), False)])
def test_has_hid_interface(classes: tuple[str, ...], hid: bool) -> None:
    assert _event(interface_classes=classes).has_hid_interface is hid


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("04e8", "04e8"), ("04E8\n", "04e8"), ("4e8", None), ("04e80", None), ("g4e8", None), ("", None), (None, None)],
)
def test_clean_usb_id(raw: str | None, clean: str | None) -> None:
    assert clean_usb_id(raw) == clean


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("R58M123ABC", "R58M123ABC"),
        (" R58M \n", "R58M"),
        ("with space", "with space"),
        ("", None),
        ("   ", None),
        ("A\tB", None),
        ("A\x7fB", None),
        ("Ä1", None),
        ("X" * 126, "X" * 126),
        ("X" * 127, None),
        (None, None),
    ],
)
def test_clean_serial(raw: str | None, clean: str | None) -> None:
    assert clean_serial(raw) == clean


@pytest.mark.parametrize(("raw", "clean"), [("08", "08"), ("FF", "ff"), ("8", None), ("008", None), ("xx", None)])
def test_clean_interface_class(raw: str, clean: str | None) -> None:
    assert clean_interface_class(raw) == clean
