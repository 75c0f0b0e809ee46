"""The USB ingestion daemon (``sanaq-usb-ingest``): tablets' export volumes in, verified batches to the gateway.

Modules: ``events`` / ``udev_source`` (the udev adapter: ``DeviceEvent``,
``DeviceSource``), ``volume_fat`` (read-only user-space FAT reader with
guards), ``puller`` (verify a volume against the registry and spool it),
``spool`` (durable spool and receipt log), ``gateway_client`` and
``forwarder`` (signed uploads, receipts, back-off), ``trust`` (the cached
registry snapshot), ``status`` / ``status_view`` (the technician view),
``station`` (the open resources), ``daemon`` (``run``), ``config``, ``errors``.
"""

from __future__ import annotations

__all__ = [
    "config",
    "daemon",
    "errors",
    "events",
    "forwarder",
    "gateway_client",
    "puller",
    "spool",
    "station",
    "status",
    "status_view",
    "trust",
    "udev_source",
    "volume_fat",
]
