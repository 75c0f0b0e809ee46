"""The reference tablet client (``sanaq-tablet``): the executable form of the protocol for app teams.

Modules: ``generator`` (deterministic synthetic sheets; ``household``,
``people``, ``places`` hold its tables), ``sheet_schema`` (the census-sheet
JSON Schema as a validator), ``outbox`` (SQLite outbox: queue, seal once,
delete only against verified proof), ``usb_export`` and ``fat_volume`` (the USB
export volume), ``identity`` (the tablet's keys from its provisioning bundle),
``provision`` (``init``: installing a bundle, where the seq line starts),
``client`` (the sync engine) over ``gateway_client`` (retried, verified
requests) and ``transport`` (signed HTTP), with ``sync_policy`` (retry rules,
``SyncConfig``) and ``sync_report``; ``outbox_worker`` (the outbox on its own
thread for asyncio), ``fleet`` / ``fleet_report`` (the fleet simulator),
``__main__`` with ``cli_sync`` and ``cli_args`` (the CLI). Errors are in ``errors``.
"""

from __future__ import annotations

from . import errors
from .client import SyncEngine
from .fleet import FleetConfig, simulate_fleet
from .fleet_report import FleetReport
from .generator import CENSUS_MOMENT, DEFAULT_MIX, KindMix, generate_sheets, tablet_profile
from .identity import TabletIdentity, load_identity
from .outbox import Outbox
from .outbox_schema import Coverage, OutboxStats, StoredBatch
from .outbox_worker import OutboxWorker
from .provision import install_identity
from .sheet_schema import SheetValidator, load_sheet_schema
from .sync_policy import RetryPolicy, SyncConfig
from .sync_report import StopReason, SyncReport
from .usb_export import ExportResult, export_files, write_export_volume

__all__ = [
    "CENSUS_MOMENT",
    "DEFAULT_MIX",
    "Coverage",
    "ExportResult",
    "FleetConfig",
    "FleetReport",
    "KindMix",
    "Outbox",
    "OutboxStats",
    "OutboxWorker",
    "RetryPolicy",
    "SheetValidator",
    "StopReason",
    "StoredBatch",
    "SyncConfig",
    "SyncEngine",
    "SyncReport",
    "TabletIdentity",
    "errors",
    "export_files",
    "generate_sheets",
    "install_identity",
    "load_identity",
    "load_sheet_schema",
    "simulate_fleet",
    "tablet_profile",
    "write_export_volume",
]
