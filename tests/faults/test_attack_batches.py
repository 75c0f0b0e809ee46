"""Attacks on the batch envelope and on the (device, seq) line, against a live gateway on loopback.

The attacker is a holder of a stolen data key (can open and re-seal bodies,
cannot sign as a tablet), an enrolled tablet or station stepping outside its
rights, or a network attacker replaying what it saw. Rows extend
``tests/gateway/test_gateway_refusals.py`` (flipped bytes, truncation, other
data key, unenrolled signer) and the wire-level rows of
``tests/wire/test_wire_envelope.py``; here each forged envelope travels with a
valid request signature, so the refusal is the envelope's own check.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from tests.gateway.harness import World, sign
from wire import decode_envelope, parse_receipt, parse_sync_state, sealing

from .attack_bed import gateway_for, security_events, send, store_state
from .bed import free_port
from .forge import forge_envelope, malleate, plaintext, with_signature

BATCH = "application/vnd.sanaq.batch"
OTHER_AUTHORITY = PrivateKey(b"\x0a" * 32)


def _victim(w: World, sheets: Any) -> bytes:
    return w.batch("TAB-0001", 1, sheets("TAB-0001", 1))


def _opened(w: World, envelope: bytes) -> bytes:
    """What a holder of the stolen data key reads out of a victim's batch."""
    return sealing.open_sealed(decode_envelope(envelope).ciphertext, w.data_public, bytes(w.data))


def _nested_body(depth: int) -> bytes:
    """Canonical in every other respect; the encoder itself refuses to build it, so it is spelled out."""
    return b'{"device_id":"TAB-0001","seq":1,"sheets":[' + b"[" * depth + b"1" + b"]" * depth + b'],"v":1}'


# A row: (id, status, code, build) with build(world, sheets) -> (envelope, signer key of the request).
Build = Callable[[World, Any], tuple[bytes, SigningKey]]

CASES: list[tuple[str, int, str, Build]] = [
    (
        "sealed box with a zeroed device signature",
        401,
        "bad-signature",
        lambda w, s: (with_signature(_victim(w, s), bytes(64)), w.tablets["TAB-0001"]),
    ),
    (
        "malleated envelope signature (S + L)",
        401,
        "bad-signature",
        lambda w, s: (with_signature(e := _victim(w, s), malleate(e[-64:])), w.tablets["TAB-0001"]),
    ),
    (
        "forged by a data-key holder, signed with the data key as an Ed25519 seed",
        401,
        "bad-signature",
        lambda w, s: (
            forge_envelope(
                device_id="TAB-0001",
                seq=1,
                body=plaintext("TAB-0001", 1, s("TAB-0001", 1)),
                record_count=2,
                key=SigningKey(bytes(w.data)),
                seal_to=w.data_public,
            ),
            w.tablets["TAB-0001"],
        ),
    ),
    (
        "victim's body re-sealed by a data-key holder under the victim's header",
        401,
        "bad-signature",
        lambda w, s: (
            forge_envelope(
                device_id="TAB-0001",
                seq=1,
                body=_opened(w, _victim(w, s)),
                record_count=2,
                key=SigningKey(b"\x66" * 32),
                seal_to=w.data_public,
            ),
            w.tablets["TAB-0001"],
        ),
    ),
    (
        "victim's body re-sealed by another enrolled tablet under its own id",
        400,
        "binding-mismatch",
        lambda w, s: (
            forge_envelope(
                device_id="TAB-0002",
                seq=1,
                body=_opened(w, _victim(w, s)),
                record_count=2,
                key=w.tablets["TAB-0002"],
                seal_to=w.data_public,
            ),
            w.tablets["TAB-0002"],
        ),
    ),
    (
        "re-sealed to another authority's data key (surreptitious forwarding)",
        400,
        "wrong-recipient",
        lambda w, s: (
            forge_envelope(
                device_id="TAB-0002",
                seq=1,
                body=_opened(w, _victim(w, s)),
                record_count=2,
                key=w.tablets["TAB-0002"],
                seal_to=bytes(OTHER_AUTHORITY.public_key),
            ),
            w.tablets["TAB-0002"],
        ),
    ),
    (
        "header names the census key, box sealed to another",
        400,
        "malformed",
        lambda w, s: (
            forge_envelope(
                device_id="TAB-0001",
                seq=1,
                body=plaintext("TAB-0001", 1, s("TAB-0001", 1)),
                record_count=2,
                key=w.tablets["TAB-0001"],
                seal_to=bytes(OTHER_AUTHORITY.public_key),
                name_recipient=w.data_public,
            ),
            w.tablets["TAB-0001"],
        ),
    ),
    (
        "device id in the header edited from TAB-0001 to TAB-0002",
        401,
        "bad-signature",
        lambda w, s: (_edit_device(_victim(w, s)), w.stations["ST-01"]),
    ),
    (
        "sheets nested 40 deep inside a validly signed batch",
        413,
        "oversize",
        lambda w, s: (
            forge_envelope(
                device_id="TAB-0001",
                seq=1,
                body=_nested_body(40),
                record_count=1,
                key=w.tablets["TAB-0001"],
                seal_to=w.data_public,
            ),
            w.tablets["TAB-0001"],
        ),
    ),
    (
        "non-canonical JSON body inside a validly signed batch",
        400,
        "non-canonical",
        lambda w, s: (
            forge_envelope(
                device_id="TAB-0001",
                seq=1,
                body=b'{"device_id":"TAB-0001","seq":1,"sheets":[{}] ,"v":1}',
                record_count=1,
                key=w.tablets["TAB-0001"],
                seal_to=w.data_public,
            ),
            w.tablets["TAB-0001"],
        ),
    ),
    (
        "body names seq 2, header seq 1",
        400,
        "binding-mismatch",
        lambda w, s: (
            forge_envelope(
                device_id="TAB-0001",
                seq=1,
                body=plaintext("TAB-0001", 2, s("TAB-0001", 1)),
                record_count=2,
                key=w.tablets["TAB-0001"],
                seal_to=w.data_public,
            ),
            w.tablets["TAB-0001"],
        ),
    ),
    (
        "record count above the per-batch limit",
        413,
        "oversize",
        lambda w, s: (
            forge_envelope(
                device_id="TAB-0001",
                seq=1,
                body=plaintext("TAB-0001", 1, [{}] * 1001),
                record_count=1001,
                key=w.tablets["TAB-0001"],
                seal_to=w.data_public,
            ),
            w.tablets["TAB-0001"],
        ),
    ),
    (
        "seq 0",
        400,
        "malformed",
        lambda w, s: (_set_seq(_victim(w, s), 0), w.tablets["TAB-0001"]),
    ),
    (
        "seq beyond 2**53 - 1",
        400,
        "malformed",
        lambda w, s: (_set_seq(_victim(w, s), 2**53), w.tablets["TAB-0001"]),
    ),
    (
        "a station carries a batch whose device signature is another tablet's",
        401,
        "bad-signature",
        lambda w, s: (
            forge_envelope(
                device_id="TAB-0001",
                seq=1,
                body=plaintext("TAB-0001", 1, s("TAB-0001", 1)),
                record_count=2,
                key=w.tablets["TAB-0002"],
                seal_to=w.data_public,
            ),
            w.stations["ST-01"],
        ),
    ),
]


def _edit_device(envelope: bytes) -> bytes:
    assert envelope[6:14] == b"TAB-0001"
    return envelope[:6] + b"TAB-0002" + envelope[14:]


def _set_seq(envelope: bytes, seq: int) -> bytes:
    at = 6 + envelope[5]
    return envelope[:at] + seq.to_bytes(8, "big") + envelope[at + 8 :]


@pytest.mark.parametrize(("name", "status", "code", "build"), CASES, ids=[c[0] for c in CASES])
async def test_envelope_attack(
    name: str, status: int, code: str, build: Build, world: World, tmp_path: Path, session, sheets, fault_ledger
) -> None:
    async with gateway_for(world, tmp_path / "c.db") as gw:
        envelope, key = build(world, sheets)
        url = f"{gw.url}/v1/batches"
        before = store_state(gw.db_path)
        answer = await send(session, "POST", url, sign("POST", url, key, envelope, BATCH), envelope)
        after = store_state(gw.db_path)
    fault_ledger.add(inputs=1, forgeries_tried=1, forgeries=int(answer.status == 200),
                     crashes=int(answer.status >= 500))
    assert (answer.status, answer.code) == (status, code), answer
    assert after == before


# ---- the (device, seq) line: equivocation, rollback, gaps, two roads --------------------------------

# (id, stored first as [(device, seq, variant, road)], then sent (device, seq, variant, road),
#  expected status, code or "duplicate"/"stored", security event kind or None)
LINE: list[tuple[str, list[tuple[str, int, int, str]], tuple[str, int, int, str], int, str, str | None]] = [
    (
        "equivocation: same seq, other sheets, by the tablet",
        [("TAB-0001", 1, 0, "tab")],
        ("TAB-0001", 1, 1, "tab"),
        409,
        "conflict",
        "seq-conflict",
    ),
    (
        "equivocation carried by a station",
        [("TAB-0001", 1, 0, "tab")],
        ("TAB-0001", 1, 1, "st"),
        409,
        "conflict",
        "seq-conflict",
    ),
    (
        "rollback: lower seq already stored, new content",
        [("TAB-0001", s, 0, "tab") for s in (1, 2, 3)],
        ("TAB-0001", 2, 1, "tab"),
        409,
        "conflict",
        "seq-conflict",
    ),
    (
        "rollback into a gap: lower seq never sent is accepted",
        [("TAB-0001", s, 0, "tab") for s in (1, 3)],
        ("TAB-0001", 2, 0, "tab"),
        200,
        "stored",
        None,
    ),
    (
        "seq far ahead of the line is accepted and leaves a gap",
        [("TAB-0001", 1, 0, "tab")],
        ("TAB-0001", 1000, 0, "tab"),
        200,
        "stored",
        None,
    ),
    (
        "first by a station, then by the tablet: one copy",
        [("TAB-0001", 1, 0, "st")],
        ("TAB-0001", 1, 0, "tab"),
        200,
        "duplicate",
        None,
    ),
    (
        "tablet A's batch posted again under tablet B's signature",
        [("TAB-0001", 1, 0, "tab")],
        ("TAB-0001", 1, 0, "tab-b"),
        403,
        "device-mismatch",
        "device-mismatch",
    ),
]


@pytest.mark.parametrize(("name", "first", "then", "status", "outcome", "event"), LINE, ids=[c[0] for c in LINE])
async def test_sequence_line_attack(
    name: str,
    first: list[tuple[str, int, int, str]],
    then: tuple[str, int, int, str],
    status: int,
    outcome: str,
    event: str | None,
    world: World,
    tmp_path: Path,
    session,
    sheets,
    fault_ledger,
) -> None:
    envelopes: dict[tuple[str, int, int], bytes] = {}

    def envelope(device: str, seq: int, variant: int) -> bytes:
        if (device, seq, variant) not in envelopes:
            envelopes[(device, seq, variant)] = world.batch(device, seq, sheets(device, seq * 10 + variant))
        return envelopes[(device, seq, variant)]

    def key(road: str, device: str) -> SigningKey:
        return {"tab": world.tablets[device], "st": world.stations["ST-01"], "tab-b": world.tablets["TAB-0002"]}[road]

    async with gateway_for(world, tmp_path / "c.db") as gw:
        url = f"{gw.url}/v1/batches"
        receipts = {}
        for device, seq, variant, road in first:
            env = envelope(device, seq, variant)
            answer = await send(session, "POST", url, sign("POST", url, key(road, device), env, BATCH), env)
            assert answer.status == 200, answer
            receipts[(device, seq)] = answer.body["receipt"]
        before = store_state(gw.db_path)
        device, seq, variant, road = then
        env = envelope(device, seq, variant)
        answer = await send(session, "POST", url, sign("POST", url, key(road, device), env, BATCH), env)
        after = store_state(gw.db_path)
        events = security_events(gw.db_path)
        state_url = f"{gw.url}/v1/devices/{device}/state"
        state = await send(session, "GET", state_url, sign("GET", state_url, world.tablets[device]))
    forged = answer.status == 200 and outcome not in ("stored", "duplicate")
    fault_ledger.add(inputs=len(first) + 1, forgeries_tried=1, forgeries=int(forged), crashes=int(answer.status >= 500))
    assert answer.status == status, answer
    if outcome == "stored":
        assert answer.body["duplicate"] is False
        assert after.counts["batches"] == before.counts["batches"] + 1
        doc = parse_sync_state(base64.b64decode(state.body["sync_state"]), world.gateway_keys)
        stored = sorted({s for _, s, _, _ in first} | {seq})
        assert doc.max_seq == stored[-1]
        assert (state.body["gaps"] == []) == (stored == list(range(1, stored[-1] + 1)))
    elif outcome == "duplicate":
        assert answer.body["duplicate"] is True and answer.body["receipt"] == receipts[(device, seq)]
        assert parse_receipt(base64.b64decode(answer.body["receipt"]), world.gateway_keys).road == "station:ST-01"
        assert after.digests["batches"] == before.digests["batches"]
        assert {**after.counts, "nonces": 0} == {**before.counts, "nonces": 0}
    else:
        assert answer.code == outcome
        assert after.digests["batches"] == before.digests["batches"]
        assert after.counts["sheets"] == before.counts["sheets"]
    assert [e[0] for e in events] == ([event] if event else [])


async def test_replay_after_sigkill_and_restart_is_refused(
    world: World, tmp_path: Path, session, sheets, fault_ledger, make_bed
) -> None:
    """The nonce is committed with the batch: a SIGKILL right after the receipt does not forget it."""
    bed = make_bed(world, tmp_path / "gw", port=free_port())
    gp = await bed.start()
    env = world.batch("TAB-0001", 1, sheets("TAB-0001", 1))
    url = f"{gp.url}/v1/batches"
    headers = sign("POST", url, world.tablets["TAB-0001"], env, BATCH)
    first = await send(session, "POST", url, headers, env)
    assert first.status == 200
    assert await gp.kill() == -9
    gp = await bed.start()
    assert gp.url + "/v1/batches" == url
    replayed = await send(session, "POST", url, headers, env)
    assert await gp.terminate() == 0
    fault_ledger.add(inputs=2, faults=1, forgeries_tried=1, forgeries=int(replayed.status == 200))
    assert (replayed.status, replayed.code) == (401, "replay")
