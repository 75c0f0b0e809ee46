"""Registry snapshots: the authority's signed, versioned, expiring list of who is trusted.

Body members (``docs/protocol.md`` section "Registry snapshot")::

    v, version (>= 1, only grows), issued_at_ms, expires_at_ms,
    data_key     {"key_id", "public_key"}           the X25519 census data key
    gateway_keys [{"key_id", "public_key"}]         Ed25519 receipt keys
    tablets      [{"device_id", "key_id", "public_key", "usb_serial",
                   "institution", "worker_id", "status", "issued_at_ms",
                   "returned_at_ms"}]
    stations     [{"station_id", "key_id", "public_key", "status"}]
    web_services [{"web_id", "key_id", "public_key", "status"}]   only when non-empty
    revoked_certificate_keys ["<key id hex>", ...]                only when non-empty


Device ids, station ids and the key ids of all tablets and stations are
each unique; a web service id is never also a tablet or station id (it
is the ``device_id`` of the batches the service seals). Tablet status is one of issued, returned, lost, revoked; only
``issued`` may sign. Station and web service status is active or revoked. ``accept_snapshot`` refuses an
expired snapshot and one older than the version the consumer already holds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from . import _fields as f
from .documents import DocKind, decode_document, sign_document, verify_document
from .envelope import check_device_id
from .errors import DecodeError, ExpiredError, RevokedKeyError, RollbackError, UnknownKeyError
from .keyids import key_id, parse_hex
from .limits import DEFAULT_LIMITS, Limits

__all__ = [
    "STATION_STATUSES",
    "TABLET_STATUSES",
    "KeyEntry",
    "RegistrySnapshot",
    "StationEntry",
    "TabletEntry",
    "WebServiceEntry",
    "accept_snapshot",
    "make_snapshot",
]

TABLET_STATUSES = ("issued", "returned", "lost", "revoked")
STATION_STATUSES = ("active", "revoked")
_MAX_ENTRIES = 200_000
_MAX_WEB_SERVICES = 64
_MAX_REVOKED_CERTIFICATE_KEYS = 1024


@dataclass(frozen=True, slots=True)
class KeyEntry:
    key_id: bytes
    public_key: bytes


@dataclass(frozen=True, slots=True)
class TabletEntry:
    device_id: str
    key_id: bytes
    public_key: bytes
    usb_serial: str
    institution: str
    worker_id: str
    status: str
    issued_at_ms: int
    returned_at_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "key_id": self.key_id.hex(),
            "public_key": self.public_key.hex(),
            "usb_serial": self.usb_serial,
            "institution": self.institution,
            "worker_id": self.worker_id,
            "status": self.status,
            "issued_at_ms": self.issued_at_ms,
            "returned_at_ms": self.returned_at_ms,
        }


@dataclass(frozen=True, slots=True)
class StationEntry:
    station_id: str
    key_id: bytes
    public_key: bytes
    status: str

    def to_json(self) -> dict[str, Any]:
        return {
            "station_id": self.station_id,
            "key_id": self.key_id.hex(),
            "public_key": self.public_key.hex(),
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class WebServiceEntry:
    """A self-enumeration web service: it seals and signs respondents' sheets as batches under ``web_id``."""

    web_id: str
    key_id: bytes
    public_key: bytes
    status: str

    def to_json(self) -> dict[str, Any]:
        return {
            "web_id": self.web_id,
            "key_id": self.key_id.hex(),
            "public_key": self.public_key.hex(),
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    version: int
    issued_at_ms: int
    expires_at_ms: int
    data_key: KeyEntry
    gateway_keys: tuple[KeyEntry, ...]
    tablets: tuple[TabletEntry, ...]
    stations: tuple[StationEntry, ...]
    raw: bytes
    web_services: tuple[WebServiceEntry, ...] = ()
    revoked_certificate_keys: frozenset[bytes] = frozenset()

    def tablet(self, device_id: str) -> TabletEntry:
        """The enrolled tablet ``device_id``; ``UnknownKeyError`` if absent."""
        for t in self.tablets:
            if t.device_id == device_id:
                return t
        raise UnknownKeyError("device not enrolled", device_id=device_id)

    def active_tablet(self, device_id: str) -> TabletEntry:
        """Like ``tablet`` but ``RevokedKeyError`` unless its status is ``issued``."""
        t = self.tablet(device_id)
        if t.status != "issued":
            raise RevokedKeyError("device is not in service", device_id=device_id, status=t.status)
        return t

    def station(self, station_id: str) -> StationEntry:
        for s in self.stations:
            if s.station_id == station_id:
                return s
        raise UnknownKeyError("station not enrolled", station_id=station_id)

    def active_station(self, station_id: str) -> StationEntry:
        s = self.station(station_id)
        if s.status != "active":
            raise RevokedKeyError("station is revoked", station_id=station_id)
        return s

    def web_service(self, web_id: str) -> WebServiceEntry:
        for w in self.web_services:
            if w.web_id == web_id:
                return w
        raise UnknownKeyError("web service not enrolled", web_id=web_id)

    def active_web_service(self, web_id: str) -> WebServiceEntry:
        w = self.web_service(web_id)
        if w.status != "active":
            raise RevokedKeyError("web service is revoked", web_id=web_id)
        return w

    def gateway_key_map(self) -> dict[bytes, bytes]:
        return {k.key_id: k.public_key for k in self.gateway_keys}


def _key_entry(obj: Any, what: str) -> KeyEntry:
    body = f.exact_members(obj, {"key_id", "public_key"}, what)
    pub = f.get_hex(body, "public_key", 32)
    kid = f.get_hex(body, "key_id", 16)
    if kid != key_id(pub):
        raise DecodeError(f"{what} key id does not match its public key")
    return KeyEntry(kid, pub)


_TABLET_MEMBERS = {
    "device_id", "key_id", "public_key", "usb_serial", "institution",
    "worker_id", "status", "issued_at_ms", "returned_at_ms",
}


def _tablet(obj: Any) -> TabletEntry:
    body = f.exact_members(obj, _TABLET_MEMBERS, "tablet entry")
    key = _key_entry({"key_id": body["key_id"], "public_key": body["public_key"]}, "tablet")
    status = f.get_str(body, "status", max_len=16)
    if status not in TABLET_STATUSES:
        raise DecodeError("tablet status unknown", status=status)
    return TabletEntry(
        device_id=check_device_id(body["device_id"]),
        key_id=key.key_id,
        public_key=key.public_key,
        usb_serial=f.get_str(body, "usb_serial", max_len=128),
        institution=f.get_str(body, "institution", max_len=64),
        worker_id=f.get_str(body, "worker_id", max_len=64),
        status=status,
        issued_at_ms=f.get_int(body, "issued_at_ms"),
        returned_at_ms=f.get_opt_int(body, "returned_at_ms"),
    )


def _station(obj: Any) -> StationEntry:
    body = f.exact_members(obj, {"station_id", "key_id", "public_key", "status"}, "station entry")
    key = _key_entry({"key_id": body["key_id"], "public_key": body["public_key"]}, "station")
    status = f.get_str(body, "status", max_len=16)
    if status not in STATION_STATUSES:
        raise DecodeError("station status unknown", status=status)
    return StationEntry(check_device_id(body["station_id"]), key.key_id, key.public_key, status)


def _web_service(obj: Any) -> WebServiceEntry:
    body = f.exact_members(obj, {"web_id", "key_id", "public_key", "status"}, "web service entry")
    key = _key_entry({"key_id": body["key_id"], "public_key": body["public_key"]}, "web service")
    status = f.get_str(body, "status", max_len=16)
    if status not in STATION_STATUSES:
        raise DecodeError("web service status unknown", status=status)
    return WebServiceEntry(check_device_id(body["web_id"]), key.key_id, key.public_key, status)


def make_snapshot(
    *,
    version: int,
    issued_at_ms: int,
    expires_at_ms: int,
    data_public_key: bytes,
    gateway_public_keys: list[bytes],
    tablets: list[TabletEntry],
    stations: list[StationEntry],
    root_key: SigningKey,
    web_services: list[WebServiceEntry] | None = None,
    revoked_certificate_keys: list[bytes] | None = None,
) -> bytes:
    """Sign a snapshot body; ``web_services`` and ``revoked_certificate_keys`` appear only when non-empty."""
    body: dict[str, Any] = {
        "v": 1,
        "version": version,
        "issued_at_ms": issued_at_ms,
        "expires_at_ms": expires_at_ms,
        "data_key": {"key_id": key_id(data_public_key).hex(), "public_key": data_public_key.hex()},
        "gateway_keys": [{"key_id": key_id(k).hex(), "public_key": k.hex()} for k in gateway_public_keys],
        "tablets": [t.to_json() for t in sorted(tablets, key=lambda t: t.device_id)],
        "stations": [s.to_json() for s in sorted(stations, key=lambda s: s.station_id)],
    }
    if web_services:
        body["web_services"] = [w.to_json() for w in sorted(web_services, key=lambda w: w.web_id)]
    if revoked_certificate_keys:
        body["revoked_certificate_keys"] = sorted({k.hex() for k in revoked_certificate_keys})
    return sign_document(DocKind.SNAPSHOT, body, root_key)


_MEMBERS = {"v", "version", "issued_at_ms", "expires_at_ms", "data_key", "gateway_keys", "tablets", "stations"}
_OPTIONAL = {"web_services", "revoked_certificate_keys"}


def _revoked_certificate_keys(body: dict[str, Any], version: int) -> frozenset[bytes]:
    listed = f.get_list(body, "revoked_certificate_keys", max_items=_MAX_REVOKED_CERTIFICATE_KEYS)
    if not listed:
        raise DecodeError("snapshot member 'revoked_certificate_keys' is present but empty", version=version)
    ids = [parse_hex(k, 16, "revoked certificate key id") for k in listed]
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise DecodeError("revoked_certificate_keys must be strictly ascending", version=version)
    return frozenset(ids)


def accept_snapshot(
    data: bytes,
    root_public_key: bytes,
    *,
    now_ms: int,
    min_version: int = 0,
    limits: Limits = DEFAULT_LIMITS,
) -> RegistrySnapshot:
    """Decode, verify against the root key, and check expiry and rollback.

    ``min_version`` is the version the consumer already holds: an equal
    version is accepted (a re-fetch), a lower one is ``RollbackError``.
    """
    doc = decode_document(data, DocKind.SNAPSHOT, limits)
    verify_document(doc, {key_id(root_public_key): root_public_key})
    optional = _OPTIONAL & set(doc.body) if isinstance(doc.body, dict) else set()
    body = f.exact_members(doc.body, _MEMBERS | optional, "snapshot")
    version = f.get_int(body, "version", minimum=1)
    issued = f.get_int(body, "issued_at_ms")
    expires = f.get_int(body, "expires_at_ms")
    if version < min_version:
        raise RollbackError("snapshot older than the one held", version=version, held=min_version)
    if now_ms >= expires:
        raise ExpiredError("registry snapshot expired", version=version, expires_at_ms=expires)
    tablets = tuple(_tablet(t) for t in f.get_list(body, "tablets", max_items=_MAX_ENTRIES))
    stations = tuple(_station(s) for s in f.get_list(body, "stations", max_items=_MAX_ENTRIES))
    web: tuple[WebServiceEntry, ...] = ()
    revoked_certs = _revoked_certificate_keys(body, version) if "revoked_certificate_keys" in optional else frozenset()
    if "web_services" in optional:
        listed = f.get_list(body, "web_services", max_items=_MAX_WEB_SERVICES)
        if not listed:
            raise DecodeError("snapshot member 'web_services' is present but empty", version=version)
        web = tuple(_web_service(w) for w in listed)
    if len({t.device_id for t in tablets}) != len(tablets) or len({s.station_id for s in stations}) != len(stations):
        raise DecodeError("snapshot lists an id twice", version=version)
    # A web service id is the device id of the batches it seals: it must name nobody else.
    other_ids = {t.device_id for t in tablets} | {s.station_id for s in stations}
    web_ids = {w.web_id for w in web}
    if len(web_ids) != len(web) or web_ids & other_ids:
        raise DecodeError("snapshot lists a web service id twice or as a tablet or station", version=version)
    # One key, one signer: a key listed twice would make a tablet key also act as a station key.
    signer_keys = [t.key_id for t in tablets] + [s.key_id for s in stations] + [w.key_id for w in web]
    if len(set(signer_keys)) != len(signer_keys):
        raise DecodeError("snapshot lists a signing key twice", version=version)
    return RegistrySnapshot(
        version=version,
        issued_at_ms=issued,
        expires_at_ms=expires,
        data_key=_key_entry(body["data_key"], "data key"),
        gateway_keys=tuple(_key_entry(k, "gateway key") for k in f.get_list(body, "gateway_keys", max_items=16)),
        tablets=tablets,
        stations=stations,
        raw=doc.raw,
        web_services=web,
        revoked_certificate_keys=revoked_certs,
    )
