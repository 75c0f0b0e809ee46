"""The reference tablet client (``sanaq-tablet``): the executable form of the protocol for app teams.

Modules: ``generator`` (deterministic synthetic sheets; ``household``,
``people``, ``places`` hold its tables), ``sheet_schema`` (the census-sheet
JSON Schema as a validator), ``outbox`` (SQLite outbox: queue, seal once,
delete only against verified proof), ``usb_export`` and ``fat_volume`` (the USB
export volume), ``identity`` (the tablet's keys from its provisioning bundle),
``__main__`` (the CLI). Errors are in ``errors``.
"""

from __future__ import annotations

from . import errors
from .generator import CENSUS_MOMENT, DEFAULT_MIX, KindMix, generate_sheets, tablet_profile
from .identity import TabletIdentity, load_identity
from .outbox import Outbox
from .outbox_schema import Coverage, OutboxStats, StoredBatch
from .sheet_schema import SheetValidator, load_sheet_schema
from .usb_export import ExportResult, export_files, write_export_volume

__all__ = [
    "CENSUS_MOMENT",
    "DEFAULT_MIX",
    "Coverage",
    "ExportResult",
    "KindMix",
    "Outbox",
    "OutboxStats",
    "SheetValidator",
    "StoredBatch",
    "TabletIdentity",
    "errors",
    "export_files",
    "generate_sheets",
    "load_identity",
    "load_sheet_schema",
    "tablet_profile",
    "write_export_volume",
]
