"""What the udev adapter tells the daemon about a block device: a small frozen value, no pyudev inside.

``DeviceEvent`` is the whole seam between ``udev_source`` (which turns every
``pyudev.Device`` into one at once) and the daemon (``docs/`` / the team's
``usb-interface.md``). It carries three kinds of facts:

* where the device is: ``devnode`` (``/dev/sdb1``) and ``sys_path``. The daemon
  keys its per-device state on ``devnode``; a ``remove`` names the same
  ``devnode`` and ``sys_path`` as the ``add`` before it.
* what udev's blkid probe says about the filesystem: ``fs_type``/``fs_label``
  (``ID_FS_TYPE``/``ID_FS_LABEL``). ``is_candidate`` is true only for a vfat
  filesystem labelled ``SANAQEXPORT`` - an unpartitioned stick (filesystem on the
  whole disk) is as much a candidate as a partition.
* what the USB parent claims: ``vendor_id``/``product_id``/``serial`` (the
  ``usb_device``'s ``idVendor``/``idProduct``/``serial`` attributes) and the
  ``bInterfaceClass`` of each of its interfaces, in interface order, e.g.
  ``("08",)`` for a plain mass-storage device or ``("08", "03")`` for one that
  also offers a HID (keyboard/mouse) interface. All of this comes from the
  device itself and is a **hint**, never proof of identity: proof is the
  manifest signature. The interface classes are exposed so the daemon's policy
  can refuse composite devices (a "tablet" that can also type keystrokes);
  this module decides nothing.

Values that do not have the expected shape (a vendor id that is not four hex
digits, a serial with control characters or longer than a USB string descriptor
can be) are reported as ``None``, and interface classes that are not two hex
digits are left out, so a hostile descriptor cannot smuggle odd text into logs
or custody records. Devices without a USB parent (SATA, NVMe, loop) have no
hints and no interface classes.

On ``remove`` the device's sysfs entries may already be gone, so the USB hints
and interface classes are often empty then; ``devnode``, ``sys_path`` and the
``ID_FS_*`` values from the uevent are what a ``remove`` reliably carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wire.manifest import VOLUME_LABEL, UsbHints

__all__ = [
    "ACTIONS",
    "CANDIDATE_FS_TYPE",
    "HID_INTERFACE_CLASS",
    "MASS_STORAGE_INTERFACE_CLASS",
    "DeviceEvent",
    "UsbHints",
    "clean_interface_class",
    "clean_serial",
    "clean_usb_id",
]

ACTIONS = ("add", "remove", "change")
CANDIDATE_FS_TYPE = "vfat"
MASS_STORAGE_INTERFACE_CLASS = "08"
HID_INTERFACE_CLASS = "03"

_USB_ID = re.compile(r"[0-9a-f]{4}")
_INTERFACE_CLASS = re.compile(r"[0-9a-f]{2}")
_MAX_SERIAL = 126  # a USB string descriptor holds at most 126 UTF-16 code units


def clean_usb_id(value: str | None) -> str | None:
    """A vendor or product id as four lowercase hex digits, else ``None``."""
    if value is None:
        return None
    value = value.strip().lower()
    return value if _USB_ID.fullmatch(value) else None


def clean_serial(value: str | None) -> str | None:
    """A serial of 1..126 printable ASCII characters (no spaces at the ends), else ``None``."""
    if value is None:
        return None
    value = value.strip()
    if not 1 <= len(value) <= _MAX_SERIAL or not all(" " <= c <= "~" for c in value):
        return None
    return value


def clean_interface_class(value: str | None) -> str | None:
    """A ``bInterfaceClass`` as two lowercase hex digits, else ``None``."""
    if value is None:
        return None
    value = value.strip().lower()
    return value if _INTERFACE_CLASS.fullmatch(value) else None


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """One udev event for a block disk or partition (see the module docstring for what each field means)."""

    action: str  # "add" | "remove" | "change"
    devnode: str  # e.g. "/dev/sdb1"
    sys_path: str
    fs_type: str | None  # ID_FS_TYPE
    fs_label: str | None  # ID_FS_LABEL
    vendor_id: str | None  # idVendor of the USB parent (hint only)
    product_id: str | None  # idProduct (hint only)
    serial: str | None  # serial of the USB parent (hint only)
    interface_classes: tuple[str, ...]  # bInterfaceClass of the USB parent's interfaces

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown device action {self.action!r}")
        if not self.devnode.startswith("/dev/"):
            raise ValueError("devnode must be a path under /dev")

    @property
    def is_candidate(self) -> bool:
        """A vfat filesystem labelled SANAQEXPORT: worth opening and looking for a manifest."""
        return self.fs_type == CANDIDATE_FS_TYPE and self.fs_label == VOLUME_LABEL

    @property
    def has_hid_interface(self) -> bool:
        """The USB parent also offers a HID interface (class 03): keyboard, mouse or similar."""
        return HID_INTERFACE_CLASS in self.interface_classes

    @property
    def hints(self) -> UsbHints:
        """The USB identifiers for a custody record; an identifier the device did not give is ``""``."""
        return UsbHints(vendor_id=self.vendor_id or "", product_id=self.product_id or "", serial=self.serial or "")
