"""Every case of every file in ``vectors/`` run against ``wire``.

Positive cases: the exact bytes are reproduced from the inputs and parse back
to the stated values. Negative cases: the exact error code is raised, and it
is a ``WireError`` (anything else fails the test). ``generate.py --check``
proves the files on disk are what the generator writes.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nacl.bindings import crypto_scalarmult_base
from nacl.signing import SigningKey

import wire
from wire import canonical, errors
from wire.keyids import key_id

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "vectors"


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def cases(name: str, member: str = "cases") -> list[Any]:
    data = load(name)
    return [pytest.param(c, id=c.get("name", str(i))) for i, c in enumerate(data[member])]


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result) or (error code, None); a non-WireError propagates and fails the test."""
    try:
        return "ok", fn()
    except errors.WireError as e:
        return e.code, None


def pub(file: dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(file["keys"][name]["public_key"])


def secret(file: dict[str, Any], name: str) -> bytes:
    k = file["keys"][name]
    return bytes.fromhex(k["seed"] if k["type"] == "ed25519" else k["secret"])


def trusted_map(file: dict[str, Any], names: list[str]) -> dict[bytes, bytes]:
    return {key_id(pub(file, n)): pub(file, n) for n in names}


# --- generator --------------------------------------------------------------------------


def test_generator_check_passes() -> None:
    proc = subprocess.run([sys.executable, str(VECTORS / "generate.py"), "--check"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_generator_check_detects_a_stale_file(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(VECTORS / "generate.py"), "--out", str(tmp_path)], check=True, timeout=60)
    assert subprocess.run([sys.executable, str(VECTORS / "generate.py"), "--check", "--out", str(tmp_path)],
                          check=False, timeout=60).returncode == 0
    target = tmp_path / "receipt.json"
    target.write_text(target.read_text().replace('"ok"', '"bad-signature"', 1))
    proc = subprocess.run([sys.executable, str(VECTORS / "generate.py"), "--check", "--out", str(tmp_path)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 1
    assert "receipt.json" in proc.stderr


def test_every_expected_code_is_a_documented_code() -> None:
    protocol = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    codes = set()
    for path in VECTORS.glob("*.json"):
        if path.name == "sheets.json":  # outcomes ok / quarantined with a rule id: tests/wire/test_wire_sheets.py
            continue
        for c in json.loads(path.read_text()).get("cases", []):
            codes.add(c["expected"])
        for c in json.loads(path.read_text()).get("reject", []):
            codes.add(c["expected"])
    for code in codes - {"ok"}:
        assert f"`{code}`" in protocol, code


HEX_LINE = re.compile(r"^[0-9a-f]{4}  ((?:[0-9a-f]{2} ?)+?)\s*\|")
DOC_BLOCK = re.compile(r"<!-- vector: (\S+) (\S+) (\S+) -->\n```\n(.*?)```", re.DOTALL)


def test_annotated_hex_in_protocol_md_is_the_vector_bytes() -> None:
    protocol = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    blocks = DOC_BLOCK.findall(protocol)
    assert len(blocks) >= 3
    for file, name, field, text in blocks:
        case = next(c for c in load(file)["cases"] if c["name"] == name)
        dumped = "".join(m.group(1).replace(" ", "") for m in map(HEX_LINE.match, text.splitlines()) if m)
        assert dumped == case[field], (file, name)
        offsets = [int(line[:4], 16) for line in text.splitlines() if HEX_LINE.match(line)]
        assert offsets[0] == 0


def test_request_signature_example_in_protocol_md_is_the_vector() -> None:
    protocol = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    case = next(c for c in REQUESTS["cases"] if c["name"] == "post-batch")
    assert case["signature_base"] in protocol
    for name in ("Content-Digest", "Signature-Input", "Signature"):
        assert f"{name}: {case['headers'][name]}\n" in protocol


# --- keys -------------------------------------------------------------------------------


def test_keys_derive_from_their_labels() -> None:
    data = load("keys.json")
    for name, k in data["keys"].items():
        derived = hashlib.sha256(b"sanaq-sync/v1/test-vector/" + name.encode()).digest()
        if k["type"] == "ed25519":
            assert k["seed"] == derived.hex()
            public = bytes(SigningKey(derived).verify_key)
        else:
            assert k["secret"] == derived.hex()
            public = bytes(crypto_scalarmult_base(derived))
        assert k["public_key"] == public.hex()
        assert k["key_id"] == hashlib.sha256(b"sanaq-sync/v1/key-id\x00" + public).digest()[:16].hex()
        assert k["key_id"] == wire.key_id_hex(public)


# --- envelope ---------------------------------------------------------------------------

ENVELOPES = load("envelope.json")


def run_envelope(file: dict[str, Any], case: dict[str, Any]) -> list[Any]:
    env = wire.decode_envelope(bytes.fromhex(case["envelope"]))
    device = file["devices"].get(env.header.device_id)
    if device is None:
        raise errors.UnknownKeyError("device not enrolled")
    if device["status"] != "issued":
        raise errors.RevokedKeyError("device not in service")
    verified = wire.verify_envelope(env, pub(file, device["key"]))
    data_key = case.get("data_key", "data")
    return wire.open_envelope(verified, pub(file, data_key), secret(file, data_key))


@pytest.mark.parametrize("case", cases("envelope.json"))
def test_envelope_case(case: dict[str, Any]) -> None:
    code, sheets = outcome(lambda: run_envelope(ENVELOPES, case))
    assert code == case["expected"]
    if code == "ok":
        assert sheets == case["sheets"]


def test_gateway_schema_step_of_the_envelope_vectors() -> None:
    from gateway.sheets import SHEET_SCHEMA_NAME

    for case in ENVELOPES["cases"]:
        if case["expected"] == "ok":
            schema = wire.decode_envelope(bytes.fromhex(case["envelope"])).header.schema
            gateway = "ok" if schema == SHEET_SCHEMA_NAME else "unsupported-schema"
            assert case.get("gateway_expected", "ok") == gateway, case["name"]


@pytest.mark.parametrize("case", [c for c in ENVELOPES["cases"] if "inputs" in c], ids=lambda c: c["name"])
def test_envelope_bytes_reproduced(case: dict[str, Any]) -> None:
    i = case["inputs"]
    plaintext = canonical.encode({"device_id": i["device_id"], "seq": i["seq"], "sheets": i["sheets"], "v": 1})
    assert plaintext.hex() == case["plaintext"]
    assert plaintext.decode("utf-8") == case["plaintext_text"]
    ciphertext = wire.sealing.seal(plaintext, pub(ENVELOPES, i["data_key"]), bytes.fromhex(i["ephemeral_secret"]))
    assert ciphertext.hex() == case["ciphertext"]
    assert ciphertext[:32].hex() == case["seal"]["ephemeral_public"]
    assert ciphertext[32:].hex() == case["seal"]["box"]
    nonce = hashlib.blake2b(ciphertext[:32] + pub(ENVELOPES, i["data_key"]), digest_size=24).digest()
    assert nonce.hex() == case["seal"]["nonce"]
    made = wire.seal_batch(
        device_id=i["device_id"], seq=i["seq"], sheets=i["sheets"], sealed_at_ms=i["sealed_at_ms"],
        device_key=SigningKey(secret(ENVELOPES, i["device_key"])), data_public_key=pub(ENVELOPES, i["data_key"]),
        ephemeral_secret=bytes.fromhex(i["ephemeral_secret"]), schema=i["schema"],
    )
    assert made.hex() == case["envelope"]
    env = wire.decode_envelope(made)
    assert env.batch_hash.hex() == case["batch_hash"]
    assert env.signed_part.hex() == case["header_bytes"]
    assert (b"sanaq-sync/v1/batch\x00" + env.signed_part).hex() == case["signing_input"]
    assert env.signature.hex() == case["signature"]
    h = case["header"]
    assert (env.header.device_id, env.header.seq, env.header.sealed_at_ms, env.header.record_count,
            env.header.schema) == (h["device_id"], h["seq"], h["sealed_at_ms"], h["record_count"], h["schema"])
    assert env.header.recipient_key_id.hex() == h["recipient_key_id"]
    assert env.header.ciphertext_hash.hex() == h["ciphertext_hash"]
    assert env.header.ciphertext_len == h["ciphertext_len"]
    # libsodium itself opens the box: the construction is crypto_box_seal.
    opened = wire.sealing.open_sealed(ciphertext, pub(ENVELOPES, "data"), secret(ENVELOPES, "data"))
    assert opened == plaintext


# --- signed documents -------------------------------------------------------------------

RECEIPTS = load("receipt.json")
SNAPSHOTS = load("snapshot.json")
MANIFESTS = load("manifest.json")
CUSTODY = load("custody.json")
SYNC = load("sync_state.json")
ASSIGNMENTS = load("assignments.json")


@pytest.mark.parametrize("case", cases("receipt.json"))
def test_receipt_case(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["document"])
    code, r = outcome(lambda: wire.parse_receipt(data, trusted_map(RECEIPTS, RECEIPTS["trusted"])))
    assert code == case["expected"]
    if code != "ok":
        return
    p = case["parsed"]
    assert (r.batch_hash.hex(), r.device_id, r.seq, r.received_at_ms, r.road, r.sheets_accepted,
            r.sheets_quarantined, r.signer_key_id.hex()) == (
        p["batch_hash"], p["device_id"], p["seq"], p["received_at_ms"], p["road"], p["sheets_accepted"],
        p["sheets_quarantined"], p["signer_key_id"])
    made = wire.make_receipt(
        batch_hash=bytes.fromhex(p["batch_hash"]), device_id=p["device_id"], seq=p["seq"],
        received_at_ms=p["received_at_ms"], road=p["road"], sheets_accepted=p["sheets_accepted"],
        sheets_quarantined=p["sheets_quarantined"], gateway_key=SigningKey(secret(RECEIPTS, case["signer"])))
    assert made == data
    assert hashlib.sha256(made).hexdigest() == case["digest"]
    assert made[:-64].endswith(case["body_text"].encode())
    env_case = next(c for c in ENVELOPES["cases"] if c["name"] == case["envelope_case"])
    assert r.batch_hash.hex() == env_case["batch_hash"]


@pytest.mark.parametrize("case", cases("snapshot.json"))
def test_snapshot_case(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["document"])
    now_ms = case.get("now_ms", SNAPSHOTS["defaults"]["now_ms"])
    min_version = case.get("min_version", SNAPSHOTS["defaults"]["min_version"])
    root = pub(SNAPSHOTS, SNAPSHOTS["root"])
    code, snap = outcome(lambda: wire.accept_snapshot(data, root, now_ms=now_ms, min_version=min_version))
    assert code == case["expected"]
    if code != "ok" or "parsed" not in case:
        return
    p = case["parsed"]
    assert (snap.version, snap.issued_at_ms, snap.expires_at_ms) == (p["version"], p["issued_at_ms"],
                                                                     p["expires_at_ms"])
    assert [t.to_json() for t in snap.tablets] == p["tablets"]
    assert [s.to_json() for s in snap.stations] == p["stations"]
    assert [w.to_json() for w in snap.web_services] == p.get("web_services", [])
    assert snap.data_key.public_key.hex() == p["data_key"]["public_key"]
    made = wire.make_snapshot(
        version=snap.version, issued_at_ms=snap.issued_at_ms, expires_at_ms=snap.expires_at_ms,
        data_public_key=snap.data_key.public_key, gateway_public_keys=[k.public_key for k in snap.gateway_keys],
        tablets=list(snap.tablets), stations=list(snap.stations), root_key=SigningKey(secret(SNAPSHOTS, "root")),
        web_services=list(snap.web_services), revoked_certificate_keys=sorted(snap.revoked_certificate_keys))
    assert sorted(k.hex() for k in snap.revoked_certificate_keys) == p.get("revoked_certificate_keys", [])
    assert made == data


def test_snapshot_statuses_gate_signers() -> None:
    snap = wire.accept_snapshot(bytes.fromhex(SNAPSHOTS["cases"][0]["document"]), pub(SNAPSHOTS, "root"),
                                now_ms=SNAPSHOTS["defaults"]["now_ms"])
    assert snap.active_tablet("TAB-00001").status == "issued"
    for device_id in ("TAB-00002", "TAB-00003"):
        assert outcome(lambda d=device_id: snap.active_tablet(d))[0] == "revoked"
    assert outcome(lambda: snap.tablet("TAB-99999"))[0] == "unknown-key"
    assert snap.active_station("ST-ALA-01").status == "active"
    assert outcome(lambda: snap.active_station("ST-ALA-02"))[0] == "revoked"
    assert snap.gateway_key_map() == trusted_map(RECEIPTS, ["gateway"])


@pytest.mark.parametrize("case", cases("manifest.json"))
def test_manifest_case(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["document"])
    code, m = outcome(lambda: wire.parse_manifest(data, pub(MANIFESTS, MANIFESTS["device_key"])))
    assert code == case["expected"]
    if code != "ok":
        return
    p = case["parsed"]
    assert (m.device_id, m.usb_serial, m.created_at_ms, m.signer_key_id.hex()) == (
        p["device_id"], p["usb_serial"], p["created_at_ms"], p["signer_key_id"])
    assert [{"file": e.file, "seq": e.seq, "size": e.size, "sha256": e.sha256.hex()} for e in m.batches] == p[
        "batches"]
    assert wire.peek_manifest_signer(data) == (p["device_id"], bytes.fromhex(p["signer_key_id"]))
    made = wire.make_manifest(device_id=m.device_id, usb_serial=m.usb_serial, created_at_ms=m.created_at_ms,
                              batches=list(m.batches), device_key=SigningKey(secret(MANIFESTS, "tablet")))
    assert made == data


def test_manifest_volume_agrees_with_its_files() -> None:
    volume = MANIFESTS["volume"]
    assert (volume["label"], volume["directory"]) == (wire.VOLUME_LABEL, wire.EXPORT_DIR)
    files = {f["name"]: bytes.fromhex(f["content"]) for f in volume["files"]}
    manifest = wire.parse_manifest(files.pop(wire.MANIFEST_NAME), pub(MANIFESTS, "tablet"))
    assert sorted(files) == [e.file for e in manifest.batches]
    for entry in manifest.batches:
        content = files[entry.file]
        assert (len(content), hashlib.sha256(content).digest()) == (entry.size, entry.sha256)
        env = wire.decode_envelope(content)
        assert (env.header.device_id, env.header.seq) == (manifest.device_id, entry.seq)
        assert wire.batch_file_name(env.header.seq) == entry.file
        wire.verify_envelope(env, pub(MANIFESTS, "tablet"))


@pytest.mark.parametrize("case", cases("custody.json"))
def test_custody_case(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["document"])
    code, c = outcome(lambda: wire.parse_custody(data, pub(CUSTODY, CUSTODY["station_key"])))
    assert code == case["expected"]
    if code != "ok":
        return
    p = case["parsed"]
    assert (c.station_id, c.device_id, c.pulled_at_ms, c.manifest_sha256.hex()) == (
        p["station_id"], p["device_id"], p["pulled_at_ms"], p["manifest_sha256"])
    assert [{"seq": s, "batch_hash": h.hex()} for s, h in c.batches] == p["batches"]
    assert {"vendor_id": c.usb.vendor_id, "product_id": c.usb.product_id, "serial": c.usb.serial} == p["usb"]
    recovery = p.get("recovery")
    assert c.recovered_at_ms == (recovery["recovered_at_ms"] if recovery else None)
    assert c.is_recovery == (recovery is not None)
    made = wire.make_custody(station_id=c.station_id, device_id=c.device_id, pulled_at_ms=c.pulled_at_ms,
                             manifest_sha256=c.manifest_sha256, batches=list(c.batches), usb=c.usb,
                             station_key=SigningKey(secret(CUSTODY, "station")), recovered_at_ms=c.recovered_at_ms)
    assert made == data
    manifest = next(x for x in MANIFESTS["cases"] if x["name"] == "ok")
    assert c.manifest_sha256.hex() == manifest["digest"]


@pytest.mark.parametrize("case", cases("sync_state.json"))
def test_sync_state_case(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["document"])
    code, s = outcome(lambda: wire.parse_sync_state(data, trusted_map(SYNC, SYNC["trusted"])))
    assert code == case["expected"]
    if code != "ok":
        return
    p = case["parsed"]
    assert (s.device_id, s.issued_at_ms, s.highest_contiguous, s.max_seq, [list(g) for g in s.gaps],
            s.last_sync_ms) == (p["device_id"], p["issued_at_ms"], p["highest_contiguous"], p["max_seq"],
                                p["gaps"], p["last_sync_ms"])
    made = wire.make_sync_state(device_id=s.device_id, issued_at_ms=s.issued_at_ms,
                                highest_contiguous=s.highest_contiguous, max_seq=s.max_seq, gaps=list(s.gaps),
                                last_sync_ms=s.last_sync_ms, gateway_key=SigningKey(secret(SYNC, "gateway")))
    assert made == data


@pytest.mark.parametrize("case", cases("assignments.json"))
def test_assignments_case(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["document"])
    code, a = outcome(lambda: wire.parse_assignments(data, trusted_map(ASSIGNMENTS, ASSIGNMENTS["trusted"])))
    assert code == case["expected"]
    if code != "ok":
        return
    p = case["parsed"]
    assert (a.device_id, a.institution, a.issued_at_ms, a.version, a.since, [e.to_json() for e in a.entries]) == (
        p["device_id"], p["institution"], p["issued_at_ms"], p["version"], p["since"], p["entries"])
    made = wire.make_assignments(device_id=a.device_id, institution=a.institution, issued_at_ms=a.issued_at_ms,
                                 version=a.version, since=a.since, entries=list(a.entries),
                                 gateway_key=SigningKey(secret(ASSIGNMENTS, "gateway")))
    assert made == data


@pytest.mark.parametrize("case", cases("sync_state.json", "compute_gaps"))
def test_compute_gaps_case(case: dict[str, Any]) -> None:
    highest, max_seq, gaps = wire.compute_gaps(case["seqs"])
    assert (highest, max_seq, [list(g) for g in gaps]) == (case["highest_contiguous"], case["max_seq"], case["gaps"])


# --- canonical JSON ---------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("canonical_json.json", "encode"))
def test_canonical_encode_case(case: dict[str, Any]) -> None:
    encoded = canonical.encode(case["value"])
    assert encoded.hex() == case["canonical_hex"]
    assert encoded == case["canonical"].encode("utf-8")
    assert canonical.decode(encoded, max_bytes=16 * 1024 * 1024) == case["value"]


@pytest.mark.parametrize("case", cases("canonical_json.json", "reject"))
def test_canonical_reject_case(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["input_hex"])
    assert outcome(lambda: canonical.decode(data, max_bytes=16 * 1024 * 1024))[0] == case["expected"]


@pytest.mark.parametrize("case", cases("canonical_json.json", "encode_reject"))
def test_canonical_encode_reject_case(case: dict[str, Any]) -> None:
    assert outcome(lambda: canonical.encode(case["value"]))[0] == case["expected"]


# --- request signatures -----------------------------------------------------------------

REQUESTS = load("request_signature.json")  # missing: collection fails naming the file (make vectors writes it)


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in REQUESTS["cases"]])
def test_request_signature_case(case: dict[str, Any]) -> None:
    from wire import httpsig

    keys = trusted_map(REQUESTS, REQUESTS["signers"])

    def lookup(kid: bytes) -> bytes:
        if kid not in keys:
            raise errors.UnknownKeyError("not enrolled")
        return keys[kid]

    code, _ = outcome(lambda: httpsig.parse_and_verify_request(
        method=case["method"], authority=case["authority"], path=case["path"], query=case["query"],
        headers=case["headers"], body=bytes.fromhex(case["body"]), lookup_key=lookup, now_s=case["now_s"],
        window_s=REQUESTS["window_s"]))
    assert code == case["expected"]
    if "signature_base" not in case:
        return
    si = httpsig.parse_dictionary(case["headers"]["Signature-Input"], what="Signature-Input")["sanaq"]
    params = dict(si.params)
    content_type = case["headers"].get("Content-Type")
    made = httpsig.sign_request(
        method=case["method"], authority=case["authority"], path=case["path"], content_type=content_type,
        body=bytes.fromhex(case["body"]) if content_type else None,
        signing_key=SigningKey(secret(REQUESTS, case["signer"])), created=params["created"], nonce=params["nonce"],
        query=case["query"])
    assert made == {k: v for k, v in case["headers"].items() if k not in ("Host", "Content-Type")}
    fields = {k.lower(): v for k, v in case["headers"].items() if k in ("Content-Digest", "Content-Type")}
    request = httpsig.HttpRequest(case["method"], case["authority"], case["path"], fields, query=case["query"] or None)
    base = httpsig.signature_base(request, si)
    assert base.decode("ascii") == case["signature_base"]


# --- ed25519 edge cases -----------------------------------------------------------------

ED25519 = load("ed25519.json")


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in ED25519["cases"]])
def test_ed25519_case(case: dict[str, Any]) -> None:
    from wire import _ed25519

    code, _ = outcome(lambda: _ed25519.verify(bytes.fromhex(case["public_key"]), bytes.fromhex(case["message"]),
                                              bytes.fromhex(case["signature"]), "vector"))
    assert code == case["expected"]


def test_small_order_list_is_the_verifiers() -> None:
    from wire import _ed25519

    for point in ED25519["small_order_points"].values():
        assert _ed25519.is_small_order(bytes.fromhex(point))
    assert not _ed25519.is_small_order(bytes.fromhex(ED25519["cases"][0]["public_key"]))


def test_the_published_sheet_schema_is_the_file_the_code_loads() -> None:
    """App teams read vectors/census-sheet-1.schema.json; gateway, tablet and web service load wire's copy."""
    from importlib import resources

    loaded = resources.files("wire").joinpath("schemas/census-sheet-1.schema.json").read_bytes()
    assert (VECTORS / "census-sheet-1.schema.json").read_bytes() == loaded
    assert json.loads(loaded)["$id"] == "urn:sanaq:schema:census-sheet/1"


# --- access codes (self-enumeration) -------------------------------------------------------

CODES = load("access_codes.json")


def pepper_id(pepper: bytes) -> str:
    from keys.access_codes import pepper_id as derive

    return derive(pepper)


@pytest.mark.parametrize("case", cases("access_codes.json"))
def test_access_codes_case(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["document"])
    code, a = outcome(lambda: wire.parse_access_codes(data, trusted_map(CODES, CODES["trusted"])))
    assert code == case["expected"]
    if code != "ok":
        return
    p = case["parsed"]
    assert (a.web_id, a.issued_at_ms, a.pepper_id, a.since, a.latest) == (
        p["web_id"], p["issued_at_ms"], p["pepper_id"], p["since"], p["latest"])
    assert a.pepper_id == pepper_id(b"\x11" * 32)
    assert [vars_of(c) for c in a.codes] == p["codes"]
    made = wire.make_access_codes(web_id=a.web_id, issued_at_ms=a.issued_at_ms, pepper_id=a.pepper_id,
                                  since=a.since, latest=a.latest, codes=list(a.codes),
                                  gateway_key=SigningKey(secret(CODES, "gateway")))
    assert made == data


def vars_of(change: wire.AccessCodeChange) -> dict[str, Any]:
    out = {name: getattr(change, name) for name in change.__slots__}
    out["members"] = list(change.entries)
    return out
