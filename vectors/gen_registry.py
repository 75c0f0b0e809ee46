"""snapshot.json, manifest.json and custody.json: the documents of trust and of the USB road."""

from __future__ import annotations

import hashlib
from typing import Any

from gen_documents import container_cases, doc_case, ok_case, raw_document
from gen_envelope import body_bytes, raw_envelope, seal_to
from gen_keys import (
    DEVICE,
    KEYS,
    LONG_DEVICE,
    LOST_DEVICE,
    OLD_STATION,
    RETURNED_DEVICE,
    STATION,
    T_EXPIRES,
    T_ISSUED,
    T_RECEIVED,
    T_SEALED,
    USB_SERIAL,
    WEB_SERVICE,
)

from wire import StationEntry, TabletEntry, WebServiceEntry, make_snapshot

__all__ = ["custody_vectors", "manifest_vectors", "snapshot_vectors"]

SNAPSHOT_VERSION = 7


def _tablet(device_id: str, key: str, status: str, worker: str, returned: int | None) -> TabletEntry:
    k = KEYS[key]
    return TabletEntry(device_id, k.key_id, k.public, f"SER-{device_id[-5:]}", "INST-0042", worker, status,
                       T_ISSUED, returned)


def _snapshot_body() -> dict[str, Any]:
    tablets = [
        _tablet(DEVICE, "tablet", "issued", "W-0101", None),
        _tablet(LOST_DEVICE, "tablet_lost", "lost", "W-0102", None),
        _tablet(RETURNED_DEVICE, "tablet_returned", "returned", "W-0103", T_ISSUED + 3_600_000),
        _tablet(LONG_DEVICE, "tablet_long", "issued", "W-0104", None),
    ]
    stations = [
        StationEntry(STATION, KEYS["station"].key_id, KEYS["station"].public, "active"),
        StationEntry(OLD_STATION, KEYS["old_station"].key_id, KEYS["old_station"].public, "revoked"),
    ]
    body = {
        "v": 1,
        "version": SNAPSHOT_VERSION,
        "issued_at_ms": T_ISSUED,
        "expires_at_ms": T_EXPIRES,
        "data_key": {"key_id": KEYS["data"].key_id.hex(), "public_key": KEYS["data"].public.hex()},
        "gateway_keys": [{"key_id": KEYS["gateway"].key_id.hex(), "public_key": KEYS["gateway"].public.hex()}],
        "tablets": [t.to_json() for t in sorted(tablets, key=lambda t: t.device_id)],
        "stations": [s.to_json() for s in stations],
    }
    made = make_snapshot(version=SNAPSHOT_VERSION, issued_at_ms=T_ISSUED, expires_at_ms=T_EXPIRES,
                         data_public_key=KEYS["data"].public, gateway_public_keys=[KEYS["gateway"].public],
                         tablets=tablets, stations=stations, root_key=KEYS["root"].signing_key)
    assert made == raw_document("snapshot", body, "root"), "wire.make_snapshot disagrees with the vector builder"
    return body


def _tablet_entry(t: dict[str, Any]) -> TabletEntry:
    return TabletEntry(t["device_id"], bytes.fromhex(t["key_id"]), bytes.fromhex(t["public_key"]), t["usb_serial"],
                       t["institution"], t["worker_id"], t["status"], t["issued_at_ms"], t["returned_at_ms"])


def _station_entry(s: dict[str, Any]) -> StationEntry:
    return StationEntry(s["station_id"], bytes.fromhex(s["key_id"]), bytes.fromhex(s["public_key"]), s["status"])


def snapshot_vectors() -> dict[str, Any]:
    body = _snapshot_body()
    good = raw_document("snapshot", body, "root")
    parsed = {k: v for k, v in body.items() if k != "v"}
    tablets = body["tablets"]

    def signed(**changes: Any) -> bytes:
        return raw_document("snapshot", {**body, **changes}, "root")

    bad_kid = [{**tablets[0], "key_id": KEYS["tablet_lost"].key_id.hex()}, *tablets[1:]]
    stolen = [{**tablets[0], "status": "stolen"}, *tablets[1:]]
    upper = [{**tablets[0], "public_key": tablets[0]["public_key"].upper()}, *tablets[1:]]
    web_entry = WebServiceEntry(WEB_SERVICE, KEYS["web"].key_id, KEYS["web"].public, "active").to_json()
    web_body = {**body, "web_services": [web_entry]}
    made_web = make_snapshot(
        version=SNAPSHOT_VERSION, issued_at_ms=T_ISSUED, expires_at_ms=T_EXPIRES, data_public_key=KEYS["data"].public,
        gateway_public_keys=[KEYS["gateway"].public], tablets=[_tablet_entry(t) for t in tablets],
        stations=[_station_entry(s) for s in body["stations"]], root_key=KEYS["root"].signing_key,
        web_services=[WebServiceEntry(WEB_SERVICE, KEYS["web"].key_id, KEYS["web"].public, "active")])
    assert made_web == raw_document("snapshot", web_body, "root"), "wire.make_snapshot disagrees (web services)"
    revoked_body = {**body, "revoked_certificate_keys": [KEYS["certificate"].key_id.hex()]}
    two_revoked = sorted([KEYS["certificate"].key_id.hex(), KEYS["other_certificate"].key_id.hex()])
    made_revoked = make_snapshot(
        version=SNAPSHOT_VERSION, issued_at_ms=T_ISSUED, expires_at_ms=T_EXPIRES, data_public_key=KEYS["data"].public,
        gateway_public_keys=[KEYS["gateway"].public], tablets=[_tablet_entry(t) for t in tablets],
        stations=[_station_entry(s) for s in body["stations"]], root_key=KEYS["root"].signing_key,
        revoked_certificate_keys=[KEYS["certificate"].key_id])
    assert made_revoked == raw_document("snapshot", revoked_body, "root"), "wire.make_snapshot disagrees (revoked)"
    cases = [
        ok_case("ok", "a current snapshot, first one seen", "snapshot", body, signer="root", parsed=parsed),
        ok_case("ok-web-service", "with a self-enumeration web service (section 9.1)", "snapshot", web_body,
                signer="root", parsed={k: v for k, v in web_body.items() if k != "v"}),
        doc_case("web-services-empty", "web_services present but empty (producers omit it), signed",
                 signed(web_services=[]), "malformed"),
        doc_case("web-id-is-tablet", "a web service id that is also a tablet's device id, signed",
                 signed(web_services=[{**web_entry, "web_id": DEVICE}]), "malformed"),
        doc_case("web-key-is-tablet-key", "a web service listed with the key of tablet TAB-00001, signed",
                 signed(web_services=[{**web_entry, "key_id": tablets[0]["key_id"],
                                       "public_key": tablets[0]["public_key"]}]), "malformed"),
        doc_case("web-status-unknown", "web service status 'issued', signed",
                 signed(web_services=[{**web_entry, "status": "issued"}]), "malformed"),
        ok_case("ok-revoked-certificate-key", "lists a revoked certificate key (section 7.4)", "snapshot",
                revoked_body, signer="root", parsed={k: v for k, v in revoked_body.items() if k != "v"}),
        doc_case("revoked-certificate-keys-empty", "revoked_certificate_keys present but empty, signed",
                 signed(revoked_certificate_keys=[]), "malformed"),
        doc_case("revoked-certificate-keys-unsorted", "two revoked certificate key ids in descending order, signed",
                 signed(revoked_certificate_keys=sorted(two_revoked, reverse=True)), "malformed"),
        doc_case("revoked-certificate-key-uppercase", "a revoked certificate key id in uppercase hex, signed",
                 signed(revoked_certificate_keys=[KEYS["certificate"].key_id.hex().upper()]), "malformed"),
        {**doc_case("ok-refetch", "the same version as the one held is accepted", good, "ok"), "min_version": 7},
        {**doc_case("ok-last-ms", "one millisecond before expires_at_ms", good, "ok"), "now_ms": T_EXPIRES - 1},
        {**doc_case("expired", "now_ms equal to expires_at_ms", good, "expired"), "now_ms": T_EXPIRES},
        {**doc_case("rollback", "older than the version already held (8)", good, "rollback"), "min_version": 8},
        {**doc_case("rollback-before-expiry", "both old and expired: rollback is checked first", good, "rollback"),
         "min_version": 8, "now_ms": T_EXPIRES},
        *container_cases("snapshot", good, body, signer="root", intruder="other_root", other_kind="manifest"),
        doc_case("signed-by-gateway-key", "validly signed by the gateway receipt key, which is not the root",
                 raw_document("snapshot", body, "gateway"), "unknown-key"),
        doc_case("key-id-mismatch", "a tablet's key_id is not the id of its public_key, signed",
                 signed(tablets=bad_kid), "malformed"),
        doc_case("duplicate-device", "the same device id twice, signed",
                 signed(tablets=[tablets[0], *tablets]), "malformed"),
        doc_case("duplicate-key", "station ST-ALA-01 listed with the key of tablet TAB-00001, signed",
                 signed(stations=[{**body["stations"][0], "key_id": tablets[0]["key_id"],
                                   "public_key": tablets[0]["public_key"]}, body["stations"][1]]), "malformed"),
        doc_case("status-unknown", "tablet status 'stolen', signed", signed(tablets=stolen), "malformed"),
        doc_case("public-key-uppercase", "uppercase hex public key, signed", signed(tablets=upper), "malformed"),
        doc_case("version-0", "version 0, signed", signed(version=0), "malformed"),
        doc_case("missing-stations", "no stations member, signed",
                 raw_document("snapshot", {k: v for k, v in body.items() if k != "stations"}, "root"), "malformed"),
    ]
    return {
        "vectors": "snapshot",
        "spec": "docs/protocol.md, section 'Registry snapshot'",
        "procedure": [
            "Decode the container (kind snapshot), verify it with the root key only (any other signer key id is "
            "unknown-key), then: version < min_version -> rollback; now_ms >= expires_at_ms -> expired; then the "
            "entries. The first failure gives 'expected'. now_ms and min_version default to 'defaults'.",
        ],
        "root": "root",
        "defaults": {"now_ms": T_SEALED, "min_version": 0},
        "keys": None,
        "cases": cases,
    }


def _batch_files() -> list[tuple[int, bytes]]:
    out = []
    for seq in (1, 2, 3):
        sheets = [{"sheet_id": f"S-1{seq:05d}", "form": "A", "persons": seq}]
        ct = seal_to(body_bytes(DEVICE, seq, sheets), "data", f"usb/{seq}")
        out.append((seq, raw_envelope(ciphertext=ct, seq=seq, sealed_at_ms=T_SEALED + seq * 60_000)))
    return out


def manifest_vectors() -> dict[str, Any]:
    files = _batch_files()
    entries = [{"file": f"{s:08d}.SQB", "seq": s, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
               for s, b in files]
    body = {"v": 1, "device_id": DEVICE, "usb_serial": USB_SERIAL, "created_at_ms": T_SEALED + 600_000,
            "batches": entries}
    empty = {**body, "batches": []}
    good = raw_document("manifest", body, "tablet")

    def parsed(b: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in b.items() if k != "v"}, "signer_key_id": KEYS["tablet"].key_id.hex()}

    def entries_with(i: int, **changes: Any) -> bytes:
        changed = [dict(e) for e in entries]
        changed[i].update(changes)
        return raw_document("manifest", {**body, "batches": changed}, "tablet")

    cases = [
        ok_case("ok", "three batches", "manifest", body, signer="tablet", parsed=parsed(body)),
        ok_case("ok-empty", "nothing to export", "manifest", empty, signer="tablet", parsed=parsed(empty)),
        *container_cases("manifest", good, body, signer="tablet", intruder="attacker", other_kind="custody"),
        doc_case("name-mismatch", "file 00000002.SQB for seq 1", entries_with(0, file="00000002.SQB"), "malformed"),
        doc_case("name-lowercase", "file 00000001.sqb", entries_with(0, file="00000001.sqb"), "malformed"),
        doc_case("name-path", "file SANAQ/00000001.SQB", entries_with(0, file="SANAQ/00000001.SQB"), "malformed"),
        doc_case("not-ascending", "entries for seqs 1, 3, 2", raw_document(
            "manifest", {**body, "batches": [entries[0], entries[2], entries[1]]}, "tablet"), "malformed"),
        doc_case("duplicate-seq", "seq 1 twice", raw_document(
            "manifest", {**body, "batches": [entries[0], *entries]}, "tablet"), "malformed"),
        doc_case("seq-too-big", "seq 100000000 has no 8-digit name",
                 entries_with(2, seq=100_000_000, file="100000000.SQB"), "malformed"),
        doc_case("size-0", "size 0", entries_with(0, size=0), "malformed"),
        doc_case("size-over-limit", "size above max_envelope_bytes", entries_with(0, size=4 * 1024 * 1024 + 1),
                 "malformed"),
        doc_case("sha256-short", "sha256 of 62 hex digits", entries_with(0, sha256=entries[0]["sha256"][:62]),
                 "malformed"),
        doc_case("entry-extra-member", "an entry with a member 'path'", entries_with(0, path="x"), "malformed"),
    ]
    return {
        "vectors": "manifest",
        "spec": "docs/protocol.md, section 'USB export volume'",
        "procedure": [
            "Decode the container (kind manifest, at most max_manifest_bytes), verify it with the key of the "
            "device it names (here 'device_key'; a signer key id other than that key's id is unknown-key), then "
            "check the entries. The first failure gives 'expected'.",
            "'volume' is a complete export volume: the manifest of case 'ok' and its batch files.",
        ],
        "device_key": "tablet",
        "keys": None,
        "cases": cases,
        "volume": {
            "label": "SANAQEXPORT",
            "directory": "SANAQ",
            "files": [{"name": "MANIFEST.SQM", "content": good.hex()}]
            + [{"name": f"{s:08d}.SQB", "content": b.hex()} for s, b in files],
        },
    }


def custody_vectors(manifest_doc: bytes) -> dict[str, Any]:
    files = _batch_files()
    body = {
        "v": 1,
        "station_id": STATION,
        "device_id": DEVICE,
        "pulled_at_ms": T_RECEIVED,
        "manifest_sha256": hashlib.sha256(manifest_doc).hexdigest(),
        "batches": [{"seq": s, "batch_hash": hashlib.sha256(b).hexdigest()} for s, b in files],
        "usb": {"vendor_id": "04e8", "product_id": "6860", "serial": USB_SERIAL},
    }
    good = raw_document("custody", body, "station")
    b = body["batches"]
    recovery = {**body, "batches": b[:2],
                "recovery": {"reason": "pull-interrupted", "recovered_at_ms": T_RECEIVED + 60_000}}
    cases = [
        ok_case("ok", "station ST-ALA-01 pulled the volume of manifest.json", "custody", body, signer="station",
                parsed={**{k: v for k, v in body.items() if k != "v"}, "signer_key_id": KEYS["station"].key_id.hex()}),
        *container_cases("custody", good, body, signer="station", intruder="other_station", other_kind="manifest"),
        doc_case("not-ascending", "batches for seqs 2, 1, 3",
                 raw_document("custody", {**body, "batches": [b[1], b[0], b[2]]}, "station"), "malformed"),
        doc_case("duplicate-seq", "seq 1 twice",
                 raw_document("custody", {**body, "batches": [b[0], *b]}, "station"), "malformed"),
        doc_case("usb-missing-serial", "usb without serial", raw_document(
            "custody", {**body, "usb": {"vendor_id": "04e8", "product_id": "6860"}}, "station"), "malformed"),
        doc_case("station-id-malformed", "station id with a slash",
                 raw_document("custody", {**body, "station_id": "ST/1"}, "station"), "malformed"),
        doc_case("seq-zero", "a batch entry with seq 0 (seqs start at 1)",
                 raw_document("custody", {**body, "batches": [{**b[0], "seq": 0}, *b[1:]]}, "station"), "malformed"),
        doc_case("seq-negative", "a batch entry with seq -1",
                 raw_document("custody", {**body, "batches": [{**b[0], "seq": -1}, *b[1:]]}, "station"), "malformed"),
        ok_case("recovery-ok", "a recovery record: the station's process died during the pull, its restart names "
                "the batches the pull had made durable", "custody", recovery,
                signer="station", parsed={**{k: v for k, v in recovery.items() if k != "v"},
                                          "signer_key_id": KEYS["station"].key_id.hex()}),
        doc_case("recovery-unknown-reason", "recovery with a reason other than pull-interrupted",
                 raw_document("custody", {**recovery, "recovery": {**recovery["recovery"], "reason": "other"}},
                              "station"), "malformed"),
        doc_case("recovery-extra-member", "recovery with a member beyond reason and recovered_at_ms",
                 raw_document("custody", {**recovery, "recovery": {**recovery["recovery"], "note": ""}}, "station"),
                 "malformed"),
        doc_case("recovery-null", "recovery member null",
                 raw_document("custody", {**body, "recovery": None}, "station"), "malformed"),
    ]
    return {
        "vectors": "custody",
        "spec": "docs/protocol.md, section 'USB export volume' (custody record)",
        "procedure": [
            "Decode the container (kind custody), verify it with the station key 'station_key' (another signer "
            "key id is unknown-key), then check the body members. The first failure gives 'expected'.",
        ],
        "station_key": "station",
        "keys": None,
        "cases": cases,
    }
