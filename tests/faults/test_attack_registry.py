"""Attacks on trust itself: registry snapshots offered to the gateway, receipts offered to a tablet.

Snapshots: ``PUT /v1/registry`` needs no request signature -- the root
signature over the snapshot is the authorisation -- so anyone on the network
can offer one. ``tests/gateway/test_gateway_registry.py`` covers the older
version, the expired one, a foreign root and garbage; the rows here add
other signers, malleated and cross-kind signatures, trailing bytes, encodings
and the expiry boundary. Each asserts the exact problem and that the registry
in force (store row and ``GET /v1/registry``) is unchanged.

Receipts: a tablet deletes data only against a receipt; a rogue gateway,
another authority or a cloned tablet can hand it receipts. The real gateway
issues the genuine ones; ``wire.parse_receipt`` with the tablet's pinned
gateway keys, then ``Outbox.mark_receipted``, must refuse every forged one
and leave the outbox exactly as it was.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from tablet.errors import CoverageRefusedError
from tablet.generator import generate_sheets
from tablet.outbox import Outbox
from tests.gateway.harness import DAY_MS, Gateway, World, now_ms, sign
from wire import make_receipt, parse_receipt
from wire.errors import WireError

from .attack_bed import gateway_for, send, store_state
from .forge import malleate

SNAP = "application/vnd.sanaq.snapshot"
BATCH = "application/vnd.sanaq.batch"


def _resigned(w: World, key: SigningKey) -> bytes:
    saved = w.root
    w.root = key
    try:
        return w.snapshot(version=50)
    finally:
        w.root = saved


def _duplicate_key(w: World) -> tuple[bytes, dict[str, str]]:
    saved = dict(w.stations)
    w.stations["ST-09"] = w.tablets["TAB-0001"]  # a tablet key enrolled as a station too
    try:
        return w.snapshot(version=50), {}
    finally:
        w.stations.clear()
        w.stations.update(saved)


# (id, status, code, build(world) -> (body, extra headers))
SnapBuild = Callable[[World], tuple[bytes, dict[str, str]]]
SNAPSHOT_CASES: list[tuple[str, int, str, SnapBuild]] = [
    ("signed by a station key", 401, "unknown-key", lambda w: (_resigned(w, w.stations["ST-01"]), {})),
    ("signed by a tablet key", 401, "unknown-key", lambda w: (_resigned(w, w.tablets["TAB-0001"]), {})),
    ("signed by the gateway receipt key", 401, "unknown-key", lambda w: (_resigned(w, w.receipt), {})),
    (
        "root signature malleated (S + L)",
        401,
        "bad-signature",
        lambda w: ((s := w.snapshot(version=50))[:-64] + malleate(s[-64:]), {}),
    ),
    (
        "a receipt signed by the root key offered as a snapshot",
        400,
        "malformed",
        lambda w: (
            make_receipt(
                batch_hash=bytes(32),
                device_id="TAB-0001",
                seq=1,
                received_at_ms=1,
                road="online",
                sheets_accepted=1,
                sheets_quarantined=0,
                gateway_key=w.root,
            ),
            {},
        ),
    ),
    ("trailing bytes after the signature", 400, "trailing-bytes", lambda w: (w.snapshot(version=50) + b"\0", {})),
    (
        "newer version that expired one millisecond ago",
        410,
        "expired",
        lambda w: (w.snapshot(version=50, now=now_ms() - DAY_MS, validity_ms=DAY_MS - 1), {}),
    ),
    ("a key listed as tablet and station", 400, "malformed", _duplicate_key),
    (
        "gzip-encoded snapshot",
        415,
        "unsupported-media-type",
        lambda w: (gzip.compress(w.snapshot(version=50)), {"Content-Encoding": "gzip"}),
    ),
    (
        "snapshot sent as application/json",
        415,
        "unsupported-media-type",
        lambda w: (w.snapshot(version=50), {"Content-Type": "application/json"}),
    ),
]


async def _registry_version(session: Any, gw: Gateway, w: World) -> str:
    url = f"{gw.url}/v1/registry"
    answer = await send(session, "GET", url, sign("GET", url, w.stations["ST-01"]))
    assert answer.status == 200
    return answer.headers["X-Sanaq-Registry-Version"]


@pytest.mark.parametrize(("name", "status", "code", "build"), SNAPSHOT_CASES, ids=[c[0] for c in SNAPSHOT_CASES])
async def test_snapshot_offer_attack(
    name: str, status: int, code: str, build: SnapBuild, world: World, tmp_path: Path, session, fault_ledger
) -> None:
    async with gateway_for(world, tmp_path / "c.db") as gw:
        before = store_state(gw.db_path)
        body, extra = build(world)
        answer = await send(session, "PUT", f"{gw.url}/v1/registry", {"Content-Type": SNAP, **extra}, body)
        after = store_state(gw.db_path)
        version = await _registry_version(session, gw, world)
    fault_ledger.add(inputs=1, forgeries_tried=1, forgeries=int(answer.status == 200),
                     crashes=int(answer.status >= 500))
    assert (answer.status, answer.code) == (status, code), answer
    assert after == before
    assert version == "1"


async def test_a_different_snapshot_with_the_held_version_is_refused(
    world: World, tmp_path: Path, session, fault_ledger
) -> None:
    async with gateway_for(world, tmp_path / "c.db", snapshot=world.snapshot(version=7)) as gw:
        world.status["TAB-0001"] = "revoked"  # the authority's v7 and another v7 that differs
        other = world.snapshot(version=7)
        same = await send(session, "PUT", f"{gw.url}/v1/registry", {"Content-Type": SNAP}, other)
        fault_ledger.add(inputs=1, forgeries_tried=1, forgeries=int(same.status == 200))
        assert (same.status, same.code) == (409, "rollback")


# ---- forged receipts presented to a tablet ----------------------------------------------------------

ROGUE_GATEWAY = SigningKey(b"\x77" * 32)


def _receipt(key: SigningKey, *, batch_hash: bytes, device_id: str = "TAB-0001", seq: int = 1, n: int = 2) -> bytes:
    return make_receipt(
        batch_hash=batch_hash,
        device_id=device_id,
        seq=seq,
        received_at_ms=now_ms(),
        road="online",
        sheets_accepted=n,
        sheets_quarantined=0,
        gateway_key=key,
    )


def _flip(raw: bytes, at: int) -> bytes:
    b = bytearray(raw)
    b[at] ^= 1
    return bytes(b)


# (id, expected refusal: a wire code or "coverage", build(ctx) -> receipt bytes)
RECEIPT_CASES: list[tuple[str, str, Callable[[dict[str, Any]], bytes]]] = [
    ("control: the genuine receipt", "", lambda c: c["genuine"]),
    ("signed by a rogue gateway key", "unknown-key", lambda c: _receipt(ROGUE_GATEWAY, batch_hash=c["hash1"])),
    ("signed by the tablet's own key", "unknown-key", lambda c: _receipt(c["device_key"], batch_hash=c["hash1"])),
    ("genuine receipt with one body byte flipped", "bad-signature", lambda c: _flip(c["genuine"], 40)),
    (
        "genuine receipt with its signature malleated",
        "bad-signature",
        lambda c: c["genuine"][:-64] + malleate(c["genuine"][-64:]),
    ),
    ("genuine receipt of another tablet's batch", "coverage", lambda c: c["other_tablet"]),
    ("genuine receipt of a cloned tablet's batch under the same seq", "coverage", lambda c: c["clone_same_seq"]),
    ("genuine receipt of a seq this outbox never sealed", "coverage", lambda c: c["clone_new_seq"]),
]


async def _post(session: Any, gw: Gateway, envelope: bytes, key: SigningKey) -> bytes:
    url = f"{gw.url}/v1/batches"
    answer = await send(session, "POST", url, sign("POST", url, key, envelope, BATCH), envelope)
    assert answer.status == 200, answer
    return base64.b64decode(answer.body["receipt"])


@pytest.mark.parametrize(("name", "refusal", "build"), RECEIPT_CASES, ids=[c[0] for c in RECEIPT_CASES])
async def test_forged_receipt_presented_to_a_tablet(
    name: str,
    refusal: str,
    build: Callable[[dict[str, Any]], bytes],
    world: World,
    tmp_path: Path,
    session,
    fault_ledger,
) -> None:
    device_key = world.tablets["TAB-0001"]
    outbox = Outbox.open(tmp_path / "tab.outbox", device_id="TAB-0001", now_ms=now_ms())
    try:
        outbox.add_sheets(generate_sheets(3, 2, device_id="TAB-0001"), now_ms=now_ms())
        (mine,) = outbox.pack(now_ms=now_ms(), device_key=device_key, data_public_key=world.data_public)
        async with gateway_for(world, tmp_path / "c.db") as gw:
            clone_tmp = world.batch("TAB-0001", 5, generate_sheets(9, 2, device_id="TAB-0001"))
            ctx = {
                "device_key": device_key,
                "hash1": mine.batch_hash,
                "genuine": await _post(session, gw, mine.envelope, device_key),
                "other_tablet": await _post(
                    session,
                    gw,
                    world.batch("TAB-0002", 1, generate_sheets(4, 2, device_id="TAB-0002")),
                    world.tablets["TAB-0002"],
                ),
                "clone_new_seq": await _post(session, gw, clone_tmp, device_key),
            }
        # a clone with the same key, racing the genuine tablet to seq 1 at another gateway instance
        async with gateway_for(world, tmp_path / "other.db") as gw2:
            clone = world.batch("TAB-0001", 1, generate_sheets(8, 2, device_id="TAB-0001"))
            ctx["clone_same_seq"] = await _post(session, gw2, clone, device_key)
        before = (outbox.pending_batches(), outbox.stats())
        raw = build(ctx)
        got = ""
        try:
            receipt = parse_receipt(raw, world.gateway_keys)  # the keys the tablet pinned at provisioning
            outbox.mark_receipted(receipt, now_ms=now_ms())
        except WireError as e:
            got = e.code
        except CoverageRefusedError:
            got = "coverage"
        after = (outbox.pending_batches(), outbox.stats())
    finally:
        outbox.close()
    fault_ledger.add(inputs=1, forgeries_tried=int(refusal != ""), forgeries=int(got == "" and refusal != ""))
    assert got == refusal
    if refusal:
        assert after == before
    else:
        assert after[0] == [] and after[1].batches_receipted == 1
