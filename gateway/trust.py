"""The gateway's current trust: the accepted registry snapshot and an index by key id.

Swapped as a whole when a newer snapshot is accepted, so a request sees one
consistent registry from start to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wire import RegistrySnapshot, StationEntry, TabletEntry, WebServiceEntry
from wire.errors import RevokedKeyError, UnknownKeyError

__all__ = ["Signer", "Trust"]


@dataclass(frozen=True, slots=True)
class Signer:
    """Who signed a request: a tablet, a station or a web service, as the registry knows it."""

    kind: str  # "tablet" | "station" | "web"
    ident: str
    key_id: bytes
    public_key: bytes
    active: bool

    @property
    def road(self) -> str:
        if self.kind == "tablet":
            return "online"
        return f"{self.kind}:{self.ident}"


@dataclass(frozen=True, slots=True)
class Trust:
    snapshot: RegistrySnapshot
    by_key: dict[bytes, Signer] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshot: RegistrySnapshot) -> Trust:
        by_key: dict[bytes, Signer] = {}
        for t in snapshot.tablets:
            by_key[t.key_id] = Signer("tablet", t.device_id, t.key_id, t.public_key, t.status == "issued")
        for s in snapshot.stations:
            by_key[s.key_id] = Signer("station", s.station_id, s.key_id, s.public_key, s.status == "active")
        for w in snapshot.web_services:
            by_key[w.key_id] = Signer("web", w.web_id, w.key_id, w.public_key, w.status == "active")
        return cls(snapshot, by_key)

    def public_key_for(self, key_id: bytes) -> bytes:
        signer = self.by_key.get(key_id)
        if signer is None:
            raise UnknownKeyError("request signed by an unknown key", key_id=key_id.hex())
        return signer.public_key

    def signer(self, key_id: bytes) -> Signer:
        signer = self.by_key.get(key_id)
        if signer is None:
            raise UnknownKeyError("request signed by an unknown key", key_id=key_id.hex())
        return signer

    def tablet(self, device_id: str) -> TabletEntry:
        return self.snapshot.active_tablet(device_id)

    def station(self, station_id: str) -> StationEntry:
        return self.snapshot.active_station(station_id)

    def web_service(self, web_id: str) -> WebServiceEntry:
        return self.snapshot.active_web_service(web_id)

    def require_active(self, signer: Signer) -> None:
        if not signer.active:
            raise RevokedKeyError("signer is not in service", signer=signer.ident)
