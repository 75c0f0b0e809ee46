"""Key and registry lifecycle for Sanaq Sync, with the I/O that ``wire/`` leaves out.

Modules: ``files`` (atomic writes, key files), ``tls`` (census CA, gateway
certificate, SSL contexts), ``registry`` (SQLite device registry and its state
machine), ``authority`` (the offline authority directory), ``snapshots``
(``SnapshotCache`` for consumers), ``bundle`` / ``enrollment`` (provisioning
bundles for tablets and stations), ``gateway_bundle`` (the gateway's keys),
``cli`` (``sanaq-keys``). All errors are in ``errors``.
"""

from __future__ import annotations

from . import errors
from .authority import DEFAULT_SNAPSHOT_VALIDITY_MS, Authority
from .bundle import ProvisioningBundle
from .enrollment import enroll_station, enroll_tablet
from .files import (
    atomic_write,
    load_data_key,
    load_public_key,
    load_signing_key,
    read_passphrase_file,
    save_data_key,
    save_public_key,
    save_signing_key,
)
from .gateway_bundle import GatewayKeys, export_gateway
from .records import SnapshotRecord, StationRecord, StatusEvent, TabletRecord
from .registry import STATION_TRANSITIONS, TABLET_TRANSITIONS, Registry
from .snapshots import SnapshotCache
from .tls import client_ssl_context, make_ca, make_server_cert, server_ssl_context

__all__ = [
    "DEFAULT_SNAPSHOT_VALIDITY_MS",
    "STATION_TRANSITIONS",
    "TABLET_TRANSITIONS",
    "Authority",
    "GatewayKeys",
    "ProvisioningBundle",
    "Registry",
    "SnapshotCache",
    "SnapshotRecord",
    "StationRecord",
    "StatusEvent",
    "TabletRecord",
    "atomic_write",
    "client_ssl_context",
    "enroll_station",
    "enroll_tablet",
    "errors",
    "export_gateway",
    "load_data_key",
    "load_public_key",
    "load_signing_key",
    "make_ca",
    "make_server_cert",
    "read_passphrase_file",
    "save_data_key",
    "save_public_key",
    "save_signing_key",
    "server_ssl_context",
]
