"""What ``sanaq-keys`` prints: rich tables for people, one JSON document for scripts.

Nothing here prints private keys; public keys and key ids only.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from wire.snapshot import RegistrySnapshot, accept_snapshot

from .authority import Authority
from .bundle import ProvisioningBundle
from .gateway_bundle import GatewayKeys
from .records import SnapshotRecord, StationRecord, StatusEvent, TabletRecord
from .registry_push import InstanceAnswer
from .rotation import Rotation

__all__ = [
    "authority_created",
    "enrolled",
    "gateway_exported",
    "history",
    "listing",
    "published",
    "pushed",
    "registry_status",
    "rotated",
    "show_snapshot",
    "status_changed",
]


_PUSH_HINT = "Next: sanaq-keys push --authority DIR URL... (every gateway instance), or it stays here."


def _console() -> Console:
    # Not a terminal (pipes, logs): wide enough that tables are not truncated.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def authority_created(a: Authority, names: list[str], encrypted: bool, *, as_json: bool) -> None:
    info = {
        "path": str(a.path),
        "root_key_id": a.root_key_id.hex(),
        "root_public_key": a.root_public_key.hex(),
        "data_key_id": a.data_key_id.hex(),
        "gateway_key_id": a.gateway_key_id.hex(),
        "server_names": names,
        "encrypted": encrypted,
        "snapshot_version": a.registry.latest_version(),
    }
    if as_json:
        _json(info)
        return
    c = _console()
    c.print(f"Authority created in {a.path}")
    c.print(f"  root key id     {info['root_key_id']}")
    c.print(f"  root public key {info['root_public_key']}")
    c.print(f"  data key id     {info['data_key_id']}")
    c.print(f"  gateway key id  {info['gateway_key_id']}")
    c.print(f"  TLS names       {', '.join(names)}")
    c.print(f"  keys encrypted  {'yes' if encrypted else 'NO (no passphrase given)'}")
    c.print(f"  snapshot        version {info['snapshot_version']} published")


def enrolled(bundle: ProvisioningBundle, version: int, *, as_json: bool) -> None:
    info = {
        "role": bundle.role,
        "id": bundle.device_id,
        "key_id": bundle.key_id.hex(),
        "bundle": str(bundle.path),
        "snapshot_version": version,
    }
    if as_json:
        _json(info)
        return
    _console().print(f"Enrolled {bundle.role} {bundle.device_id} (key id {info['key_id']}); "
                     f"bundle written to {bundle.path}; snapshot version {version} published")
    _console().print(_PUSH_HINT)


def status_changed(record: TabletRecord | StationRecord, version: int | None, *, as_json: bool) -> None:
    info = record.to_json() | {"snapshot_version": version}
    if as_json:
        _json(info)
        return
    subject = record.device_id if isinstance(record, TabletRecord) else record.station_id
    published = f"snapshot version {version} published" if version is not None else "no snapshot published"
    _console().print(f"{subject} is now {record.status}; {published}")
    if version is not None:
        _console().print(_PUSH_HINT)


def listing(tablets: list[TabletRecord], stations: list[StationRecord], version: int, *, as_json: bool) -> None:
    if as_json:
        _json({"tablets": [t.to_json() for t in tablets], "stations": [s.to_json() for s in stations],
               "latest_snapshot_version": version})
        return
    t = Table(title=f"Tablets ({len(tablets)})")
    for col in ("device", "status", "institution", "worker", "name", "usb serial", "act", "issued", "key id"):
        t.add_column(col)
    for r in tablets:
        t.add_row(r.device_id, r.status, r.institution, r.worker_id, r.worker_name or "-", r.usb_serial,
                  r.act_no or "-", _when(r.issued_at_ms), r.key_id.hex()[:12])
    s = Table(title=f"Stations ({len(stations)})")
    for col in ("station", "status", "location", "enrolled", "key id"):
        s.add_column(col)
    for st in stations:
        s.add_row(st.station_id, st.status, st.location or "-", _when(st.enrolled_at_ms), st.key_id.hex()[:12])
    c = _console()
    c.print(t)
    c.print(s)
    c.print(f"Latest published snapshot version: {version}")


def history(events: list[StatusEvent], *, as_json: bool) -> None:
    if as_json:
        _json([{"id": e.id, "subject_id": e.subject_id, "subject_kind": e.subject_kind,
                "from_status": e.from_status, "to_status": e.to_status, "at_ms": e.at_ms, "reason": e.reason,
                "evidence_bytes": None if e.evidence is None else len(e.evidence)} for e in events])
        return
    t = Table(title="Status history")
    for col in ("#", "when", "subject", "change", "reason"):
        t.add_column(col)
    for e in events:
        t.add_row(str(e.id), _when(e.at_ms), f"{e.subject_kind} {e.subject_id}",
                  f"{e.from_status or 'new'} -> {e.to_status}", e.reason or "-")
    _console().print(t)


def published(record: SnapshotRecord, path: str, *, as_json: bool) -> None:
    info = {"version": record.version, "published_at_ms": record.published_at_ms,
            "expires_at_ms": record.expires_at_ms, "sha256": record.sha256, "path": path}
    if as_json:
        _json(info)
        return
    _console().print(f"Published snapshot version {record.version} (expires {_when(record.expires_at_ms)}) "
                     f"to {path}")
    _console().print(_PUSH_HINT)


def show_snapshot(data: bytes, root_public_key: bytes, now_ms: int, *, as_json: bool) -> int:
    """Verify the root signature and summarise; 1 when expired, 0 otherwise (bad bytes raise)."""
    snap: RegistrySnapshot = accept_snapshot(data, root_public_key, now_ms=0)  # signature only; expiry below
    expired = now_ms >= snap.expires_at_ms
    counts: dict[str, int] = {}
    for tab in snap.tablets:
        counts[tab.status] = counts.get(tab.status, 0) + 1
    info = {
        "version": snap.version, "issued_at_ms": snap.issued_at_ms, "expires_at_ms": snap.expires_at_ms,
        "expired": expired, "data_key_id": snap.data_key.key_id.hex(),
        "gateway_key_ids": [k.key_id.hex() for k in snap.gateway_keys],
        "tablets": [t.to_json() for t in snap.tablets], "stations": [s.to_json() for s in snap.stations],
        "tablet_status_counts": counts,
    }
    if as_json:
        _json(info)
        return 1 if expired else 0
    c = _console()
    c.print(f"Registry snapshot version {snap.version}: signature OK")
    c.print(f"  issued  {_when(snap.issued_at_ms)}")
    c.print(f"  expires {_when(snap.expires_at_ms)}{'  EXPIRED' if expired else ''}")
    c.print(f"  data key id {snap.data_key.key_id.hex()}")
    c.print(f"  gateway key ids {', '.join(k.key_id.hex() for k in snap.gateway_keys)}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
    c.print(f"  tablets: {len(snap.tablets)} ({summary})")
    active = sum(1 for s in snap.stations if s.status == "active")
    c.print(f"  stations: {len(snap.stations)} ({active} active)")
    return 1 if expired else 0


def gateway_exported(keys: GatewayKeys, *, as_json: bool) -> None:
    info = {"path": str(keys.path), "receipt_key_id": keys.receipt_key_id.hex(),
            "data_key_id": keys.data_key_id.hex(), "server_names": list(keys.server_names)}
    if as_json:
        _json(info)
        return
    _console().print(f"Gateway keys written to {keys.path} (receipt key id {info['receipt_key_id']}, "
                     f"TLS names {', '.join(keys.server_names)})")
    if keys.previous_data_key_files:
        listed = ", ".join(f'"{n}"' for n in keys.previous_data_key_files)
        _console().print(f"Retired data keys included: set keys.previous_data_keys = [{listed}] in gateway.toml "
                         "and load each file as a credential (docs/operations.md, 'Rotating keys').")


def rotated(rotation: Rotation, *, as_json: bool) -> None:
    info = {"kind": rotation.kind, "old": rotation.old_key_id, "new": rotation.new_key_id,
            "snapshot_version": rotation.snapshot_version, "server_names": list(rotation.server_names)}
    if as_json:
        _json(info)
        return
    c = _console()
    if rotation.kind == "receipt-prepare":
        c.print(f"Prepared the next receipt key {rotation.new_key_id} (current {rotation.old_key_id} stays in use); "
                f"snapshot version {rotation.snapshot_version} published, listing both")
        c.print("Next: push; bundles enrolled from now on accept receipts of either key. "
                "`sanaq-keys rotate receipt` switches later.")
        return
    what = {"tls": "TLS certificate (serial)", "receipt": "receipt key", "data": "census data key"}[rotation.kind]
    c.print(f"Rotated the {what}: {rotation.old_key_id} -> {rotation.new_key_id}; "
            f"snapshot version {rotation.snapshot_version} published")
    if rotation.server_names:
        c.print(f"  TLS names {', '.join(rotation.server_names)}")
    c.print("Next: export-gateway, install it on every gateway instance, restart, then push "
            "(docs/operations.md, 'Rotating keys')")


def _iso(ms: int) -> str:
    return _when(ms)


def pushed(record: SnapshotRecord, answers: list[InstanceAnswer], *, as_json: bool) -> int:
    failed = [a for a in answers if not a.ok or a.version != record.version]
    if as_json:
        _json({"version": record.version, "expires_at_ms": record.expires_at_ms,
               "instances": [{"url": a.url, "ok": a.ok and a.version == record.version, "version": a.version,
                              "error": a.error} for a in answers]})
        return 1 if failed else 0
    print(f"Pushing snapshot version {record.version} (expires {_iso(record.expires_at_ms)})")
    for a in answers:
        if a.ok and a.version == record.version:
            print(f"  {a.url}: ok, version {a.version} in force")
        elif a.ok:
            print(f"  {a.url}: FAILED: the gateway holds version {a.version}, newer than this authority's")
        else:
            print(f"  {a.url}: FAILED: {a.error}")
    print(f"{len(answers) - len(failed)} of {len(answers)} instances hold version {record.version}")
    return 1 if failed else 0


def registry_status(answers: list[InstanceAnswer], records: dict[int, SnapshotRecord], latest: int, now_ms: int,
                    *, as_json: bool) -> int:
    expiries = {a.url: records[a.version].expires_at_ms if a.version in records else None for a in answers}
    behind = {a.url: a.version is None or a.version < latest for a in answers}
    bad = any(behind.values()) or not all(a.ok for a in answers)
    if as_json:
        _json({"latest": latest, "instances": [
            {"url": a.url, "ready": a.ok, "version": a.version, "behind": behind[a.url],
             "expires_at_ms": expiries[a.url], "problems": list(a.problems), "error": a.error} for a in answers]})
        return 1 if bad else 0
    print(f"Authority's latest snapshot: version {latest}")
    for a in answers:
        if a.version is None and not a.problems:
            print(f"  {a.url}: UNREACHABLE: {a.error}")
            continue
        expiry = expiries[a.url]
        when = ""
        if expiry is not None:
            when = f", expires {_iso(expiry)}" + (" (EXPIRED)" if expiry <= now_ms else "")
        state = "behind: run sanaq-keys push" if behind[a.url] else "up to date"
        ready = "ready" if a.ok else f"NOT READY ({'; '.join(a.problems) or a.error})"
        print(f"  {a.url}: version {a.version}{when}; {state}; {ready}")
    return 1 if bad else 0
