"""Every refusal of POST /v1/batches: its status, its code, and an unchanged store."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from gateway.config import LimitsConfig

from .harness import World, sign, start_gateway

BATCH = "application/vnd.sanaq.batch"


def flip(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


# A case builds (body signed, signing key, extra sign kwargs, headers override, body sent instead).
# The override replaces the signed headers, or is merged into them when it says "merge": "yes".
Case = Callable[[World, list[Any]], tuple[bytes, SigningKey, dict[str, Any], dict[str, str] | None, bytes | None]]


def _ok(w: World, s: list[Any]) -> bytes:
    return w.batch("TAB-0001", 1, s)


CASES: list[tuple[str, int, str, Case]] = [
    (
        "no signature headers",
        401,
        "missing-signature",
        lambda w, s: (_ok(w, s), w.tablets["TAB-0001"], {}, {"Content-Type": BATCH}, None),
    ),
    (
        "garbled signature input",
        401,
        "bad-signature-input",
        lambda w, s: (
            _ok(w, s),
            w.tablets["TAB-0001"],
            {},
            {"Signature-Input": "sanaq=(((", "Signature": "sanaq=:AA==:", "Content-Type": BATCH},
            None,
        ),
    ),
    ("unknown key", 401, "unknown-key", lambda w, s: (_ok(w, s), SigningKey(b"\x09" * 32), {}, None, None)),
    (
        "signature over another body",
        400,
        "digest-mismatch",
        lambda w, s: (_ok(w, s), w.tablets["TAB-0001"], {}, None, w.batch("TAB-0001", 2, s)),
    ),
    (
        "tablet sends another tablet's batch",
        403,
        "device-mismatch",
        lambda w, s: (_ok(w, s), w.tablets["TAB-0002"], {}, None, None),
    ),
    (
        "stale created",
        401,
        "clock-skew",
        lambda w, s: (_ok(w, s), w.tablets["TAB-0001"], {"created": int(time.time()) - 301 - 5}, None, None),
    ),
    (
        "future created",
        401,
        "clock-skew",
        lambda w, s: (_ok(w, s), w.tablets["TAB-0001"], {"created": int(time.time()) + 400}, None, None),
    ),
    ("truncated envelope", 400, "truncated", lambda w, s: (_ok(w, s)[:-10], w.tablets["TAB-0001"], {}, None, None)),
    ("trailing byte", 400, "trailing-bytes", lambda w, s: (_ok(w, s) + b"\0", w.tablets["TAB-0001"], {}, None, None)),
    (
        "flipped ciphertext byte",
        400,
        "hash-mismatch",
        lambda w, s: (flip(_ok(w, s), -100), w.tablets["TAB-0001"], {}, None, None),
    ),
    (
        "flipped signature byte",
        401,
        "bad-signature",
        lambda w, s: (flip(_ok(w, s), -1), w.tablets["TAB-0001"], {}, None, None),
    ),
    (
        "flipped sealed_at byte",
        401,
        "bad-signature",
        lambda w, s: (flip(_ok(w, s), 4 + 1 + 1 + 8 + 8 + 8 - 1), w.tablets["TAB-0001"], {}, None, None),
    ),
    (
        "version 2",
        400,
        "unsupported-version",
        lambda w, s: (b"SNQB\x02" + _ok(w, s)[5:], w.tablets["TAB-0001"], {}, None, None),
    ),
    (
        "batch signed by a key not enrolled for the device",
        401,
        "bad-signature",
        lambda w, s: (w.batch("TAB-0001", 1, s, key=SigningKey(b"\x07" * 32)), w.tablets["TAB-0001"], {}, None, None),
    ),
    (
        "sealed to another data key",
        400,
        "wrong-recipient",
        lambda w, s: (
            w.batch("TAB-0001", 1, s, data_public=bytes(PrivateKey(b"\x05" * 32).public_key)),
            w.tablets["TAB-0001"],
            {},
            None,
            None,
        ),
    ),
    (
        "unknown sheet schema",
        400,
        "unsupported-schema",
        lambda w, s: (w.batch("TAB-0001", 1, s, schema="census-sheet/9"), w.tablets["TAB-0001"], {}, None, None),
    ),
    ("not an envelope", 400, "malformed", lambda w, s: (b'{"sheets": []}', w.tablets["TAB-0001"], {}, None, None)),
    (
        "wrong content type",
        415,
        "unsupported-media-type",
        lambda w, s: (_ok(w, s), w.tablets["TAB-0001"], {}, {"Content-Type": "application/json", "merge": "yes"}, None),
    ),
]


@pytest.mark.parametrize(("name", "status", "code", "build"), CASES, ids=[c[0] for c in CASES])
async def test_refusal(name: str, status: int, code: str, build: Case, world: World, gw, session, sheets) -> None:
    body, key, sign_kw, override, send_instead = build(world, sheets(2))
    url = f"{gw.url}/v1/batches"
    headers = sign("POST", url, key, body, BATCH, **sign_kw)
    if override is not None:
        merge = override.pop("merge", "") == "yes"
        headers = {**headers, **override} if merge else override
    payload = send_instead if send_instead is not None else body
    async with session.post(url, data=payload, headers=headers) as resp:
        problem = await resp.json(content_type=None)
        assert resp.status == status, problem
        assert resp.content_type == "application/problem+json"
    assert problem["code"] == code
    assert problem["type"] == f"urn:sanaq:problem:{code}"
    assert isinstance(problem["server_time_ms"], int)
    with sqlite3.connect(gw.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM batches").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM sheets").fetchone() == (0,)


@pytest.mark.parametrize("status", ["revoked", "returned", "lost"])
async def test_tablet_out_of_service_is_refused_and_recorded(
    status: str, world: World, tmp_path: Path, session, sheets
) -> None:
    world.status["TAB-0001"] = status
    gw = await start_gateway(world, tmp_path / "c.db")
    try:
        url = f"{gw.url}/v1/batches"
        body = world.batch("TAB-0001", 1, sheets(1))
        async with session.post(
            url, data=body, headers=sign("POST", url, world.tablets["TAB-0001"], body, BATCH)
        ) as resp:
            assert resp.status == 403
            assert (await resp.json())["code"] == "revoked"
        # carried by a station, the batch of a tablet out of service is refused as well
        async with session.post(
            url, data=body, headers=sign("POST", url, world.stations["ST-01"], body, BATCH)
        ) as resp:
            assert resp.status == 403
        with sqlite3.connect(gw.db_path) as conn:
            assert conn.execute("SELECT count(*) FROM batches").fetchone() == (0,)
            kinds = {r[0] for r in conn.execute("SELECT kind FROM security_events")}
        assert kinds == {"revoked-signer", "revoked-device-batch"}
    finally:
        await gw.stop()


async def test_oversize_body_is_413_and_nothing_stored(world: World, tmp_path: Path, session, sheets) -> None:
    gw = await start_gateway(world, tmp_path / "c.db", limits=LimitsConfig(max_body_bytes=2048))
    try:
        body = world.batch("TAB-0001", 1, sheets(20))
        assert len(body) > 2048
        url = f"{gw.url}/v1/batches"
        async with session.post(
            url, data=body, headers=sign("POST", url, world.tablets["TAB-0001"], body, BATCH)
        ) as resp:
            assert resp.status == 413
            assert (await resp.json())["code"] == "oversize"
    finally:
        await gw.stop()
