"""The udev adapter: block devices from libudev (pyudev), turned at once into ``DeviceEvent`` values.

``UdevDeviceSource`` is the only place a ``pyudev.Device`` exists. It watches
the ``block`` subsystem, device types ``disk`` and ``partition`` (an
unpartitioned FAT stick carries its filesystem on the disk itself), with the
filter installed in the kernel-side socket filter by libudev, and is driven
from its file descriptor: ``loop.add_reader(monitor.fileno(), ...)`` and
``monitor.poll(timeout=0)`` until nothing is left. The reader is level
triggered, so a datagram libudev drops (``poll`` answers ``None`` for it) never
strands the ones behind it.

Ordering: the monitor socket is bound on the first call of ``existing()`` or
``start()``, before enumerating, so a device plugged between the enumeration
and ``start()`` is not lost; it may be reported twice (once by ``existing()``,
once as an ``add`` event), which the daemon must tolerate - its state is keyed
on ``devnode`` anyway.

Failure containment: a device whose properties cannot be read or do not make a
``DeviceEvent`` (no device node, an action other than add/remove/change) is
logged (``usb.udev.device_skipped``) and skipped; an exception from the
callback is logged (``usb.udev.callback_failed``); a failed receive
(``ENOBUFS`` after a burst, for instance) is logged (``usb.udev.receive_failed``)
and the drain returns. Nothing raises out of the reader callback, so one odd
device never takes the event loop down.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Protocol

import pyudev
import structlog

from .events import ACTIONS, DeviceEvent, clean_interface_class, clean_serial, clean_usb_id

__all__ = ["BLOCK_DEVICE_TYPES", "DeviceSource", "UdevDeviceSource", "event_from_device"]

BLOCK_DEVICE_TYPES = ("disk", "partition")

log = structlog.get_logger("usb_ingest.udev_source")


class DeviceSource(Protocol):
    def existing(self) -> list[DeviceEvent]: ...  # block disks/partitions present now (action "add")

    def start(self, on_event: Callable[[DeviceEvent], None]) -> None: ...  # loop.add_reader on the monitor fd

    def stop(self) -> None: ...


def _attribute(device: pyudev.Device, name: str) -> str | None:
    try:
        return str(device.attributes.asstring(name))
    except (KeyError, UnicodeDecodeError, OSError):
        return None


def _usb_parent(device: pyudev.Device) -> pyudev.Device | None:
    try:
        return device.find_parent("usb", "usb_device")
    except (pyudev.DeviceNotFoundError, OSError):
        return None


def _interface_classes(context: pyudev.Context, usb_device: pyudev.Device) -> tuple[str, ...]:
    """``bInterfaceClass`` of the direct ``usb_interface`` children of ``usb_device``, in sysfs name order."""
    interfaces = []
    for child in context.list_devices(subsystem="usb").match_parent(usb_device):
        if child.device_type == "usb_interface" and os.path.dirname(child.sys_path) == usb_device.sys_path:
            interfaces.append(child)
    classes = (clean_interface_class(_attribute(i, "bInterfaceClass")) for i in sorted(interfaces, key=_sys_path))
    return tuple(c for c in classes if c is not None)


def _sys_path(device: pyudev.Device) -> str:
    return str(device.sys_path)


def event_from_device(context: pyudev.Context, device: pyudev.Device, action: str) -> DeviceEvent:
    """Build the event for ``device``; raises ``ValueError`` if it has no device node or ``action`` is unknown."""
    devnode = device.device_node
    if not devnode:
        raise ValueError("block device without a device node")
    properties = device.properties
    usb = _usb_parent(device)
    vendor = product = serial = None
    classes: tuple[str, ...] = ()
    if usb is not None:
        vendor = clean_usb_id(_attribute(usb, "idVendor"))
        product = clean_usb_id(_attribute(usb, "idProduct"))
        serial = clean_serial(_attribute(usb, "serial"))
        classes = _interface_classes(context, usb)
    return DeviceEvent(
        action=action,
        devnode=str(devnode),
        sys_path=str(device.sys_path),
        fs_type=properties.get("ID_FS_TYPE") or None,
        fs_label=properties.get("ID_FS_LABEL") or None,
        vendor_id=vendor,
        product_id=product,
        serial=serial,
        interface_classes=classes,
    )


class UdevDeviceSource:
    """``DeviceSource`` on libudev: ``existing()`` enumerates, ``start()`` follows uevents on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, context: pyudev.Context | None = None) -> None:
        self._loop = loop
        self._context = context if context is not None else pyudev.Context()
        self._monitor: pyudev.Monitor | None = None
        self._on_event: Callable[[DeviceEvent], None] | None = None

    def _bound_monitor(self) -> pyudev.Monitor:
        if self._monitor is None:
            monitor = pyudev.Monitor.from_netlink(self._context)
            for device_type in BLOCK_DEVICE_TYPES:
                monitor.filter_by("block", device_type)
            monitor.start()
            self._monitor = monitor
        return self._monitor

    def _convert(self, device: pyudev.Device, action: str | None) -> DeviceEvent | None:
        if action not in ACTIONS:
            log.debug("usb.udev.action_ignored", action=action, sys_path=str(device.sys_path))
            return None
        try:
            return event_from_device(self._context, device, action)
        except Exception as e:  # a device we cannot describe is skipped, never fatal
            log.warning("usb.udev.device_skipped", action=action, sys_path=str(device.sys_path),
                        error=type(e).__name__, detail=str(e))
            return None

    def existing(self) -> list[DeviceEvent]:
        """Every block disk and partition present now, as ``add`` events (the monitor is bound first)."""
        self._bound_monitor()
        found = []
        for device in self._context.list_devices(subsystem="block"):
            if device.device_type in BLOCK_DEVICE_TYPES and (event := self._convert(device, "add")) is not None:
                found.append(event)
        log.info("usb.udev.enumerated", devices=len(found), candidates=sum(e.is_candidate for e in found))
        return found

    def start(self, on_event: Callable[[DeviceEvent], None]) -> None:
        """Call ``on_event`` (on the loop's thread; it must be cheap) for every uevent from now on."""
        if self._on_event is not None:
            raise RuntimeError("UdevDeviceSource already started")
        monitor = self._bound_monitor()
        self._on_event = on_event
        self._loop.add_reader(monitor.fileno(), self._drain)
        log.info("usb.udev.started")

    def stop(self) -> None:
        """Stop reading and close the monitor socket; safe to call twice or before ``start()``."""
        monitor, self._monitor, self._on_event = self._monitor, None, None
        if monitor is not None:
            self._loop.remove_reader(monitor.fileno())
            del monitor  # pyudev closes the socket when the last reference goes (udev_monitor_unref)
            log.info("usb.udev.stopped")

    def _drain(self) -> None:
        monitor, on_event = self._monitor, self._on_event
        if monitor is None or on_event is None:
            return
        while True:
            try:
                device = monitor.poll(timeout=0)
            except OSError as e:
                log.warning("usb.udev.receive_failed", errno=e.errno)
                return
            if device is None:
                return
            event = self._convert(device, device.action)
            if event is None:
                continue
            try:
                on_event(event)
            except Exception as e:
                log.error("usb.udev.callback_failed", devnode=event.devnode, error=type(e).__name__)
