"""Attacks on the request signature (RFC 9421 profile) against a live gateway on loopback.

Each row builds one request the way an attacker would -- a network attacker
inside the VPN who can read, replay and rewrite requests, or an enrolled
device stepping outside its rights -- and asserts the exact status and code,
and that the census store is unchanged except its security event log. The
rows extend ``tests/gateway/test_gateway_refusals.py`` (unsigned, garbled,
unknown key, other body, stale and future ``created``), which are not
repeated here. A control row proves the attack builder makes requests the
gateway accepts when nothing is wrong with them.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from tests.gateway.harness import Gateway, World, sign
from wire import httpsig, key_id
from wire.structured_fields import InnerList, Item

from .attack_bed import gateway_for, security_events, send, store_state
from .forge import ForgedRequest, hmac_signer, malleate, nonce

BATCH = "application/vnd.sanaq.batch"


@dataclass
class Ctx:
    world: World
    gw: Gateway
    envelope: bytes

    @property
    def tablet(self) -> SigningKey:
        return self.world.tablets["TAB-0001"]

    def forged(self, **kw: Any) -> ForgedRequest:
        base: dict[str, Any] = {
            "method": "POST",
            "url": f"{self.gw.url}/v1/batches",
            "body": self.envelope,
            "key": self.tablet,
        }
        base.update(kw)
        return ForgedRequest(**base)


# A row: (id, status, code, build) where build(ctx) -> (method, url, headers, body).
Build = Callable[[Ctx], tuple[str, str, dict[str, str], bytes | None]]


def post(fr: ForgedRequest, body: bytes | None = None) -> tuple[str, str, dict[str, str], bytes | None]:
    return fr.method, fr.url, fr.headers(), fr.body if body is None else body


def _params(c: Ctx, **change: Any) -> tuple[tuple[str, Any], ...]:
    base = dict(c.forged().default_params())
    base.update(change)
    return tuple((k, v) for k, v in base.items() if v is not None)


def _second_signature(c: Ctx) -> tuple[str, str, dict[str, str], bytes | None]:
    evil = SigningKey(b"\x44" * 32)
    inner = InnerList(tuple(Item(x) for x in httpsig.COMPONENTS_WITH_BODY), c.forged(key=evil).default_params())
    fr = c.forged(extra_inputs={"evil": inner}, extra_signatures={"evil": Item(b"\x00" * 64)})
    return post(fr)


def _signature_header_only_second(c: Ctx) -> tuple[str, str, dict[str, str], bytes | None]:
    fr = c.forged(extra_signatures={"sanaq2": Item(b"\x01" * 64)})
    return post(fr)


def _two_field_lines(c: Ctx) -> tuple[str, str, dict[str, str], bytes | None]:
    headers = c.forged().headers()
    # aiohttp sends a CIMultiDict with both lines; the server joins them with ", "
    from multidict import CIMultiDict

    md = CIMultiDict(headers)
    md.add("Signature-Input", headers["Signature-Input"])
    return "POST", f"{c.gw.url}/v1/batches", md, c.envelope  # type: ignore[return-value]


def _zero_sig(c: Ctx) -> tuple[str, str, dict[str, str], bytes | None]:
    return post(c.forged(signer=lambda base: b"\x00" * 64))


def _malleated(c: Ctx) -> tuple[str, str, dict[str, str], bytes | None]:
    key = c.tablet
    return post(c.forged(signer=lambda base: malleate(bytes(key.sign(base).signature))))


def _hmac_alg(c: Ctx, alg: str | None, digest: str) -> tuple[str, str, dict[str, str], bytes | None]:
    device_pub = bytes(c.tablet.verify_key)  # the verifier knows it: a classic alg-confusion key
    params = _params(c, alg=alg) if alg else _params(c)
    return post(c.forged(params=params, signer=hmac_signer(device_pub, digest)))


def _cross_tablet_keyid(c: Ctx) -> tuple[str, str, dict[str, str], bytes | None]:
    other = c.world.tablets["TAB-0002"]
    return post(c.forged(params=_params(c, keyid=key_id(bytes(other.verify_key)).hex())))


def _digest(value: str) -> Build:
    return lambda c: post(c.forged(digest=value))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _swap_digest(c: Ctx) -> tuple[str, str, dict[str, str], bytes | None]:
    other = c.world.batch("TAB-0001", 9, [{"x": 1}])
    headers = c.forged(body=other).headers()
    headers["Content-Digest"] = httpsig.content_digest(c.envelope)
    return "POST", f"{c.gw.url}/v1/batches", headers, c.envelope


CASES: list[tuple[str, int, str, Build]] = [
    ("control: honest request from the attack builder", 200, "", lambda c: post(c.forged())),
    (
        "signature does not cover content-digest",
        401,
        "bad-signature-input",
        lambda c: post(c.forged(components=("@method", "@authority", "@path", "content-type"))),
    ),
    (
        "signature does not cover content-type",
        401,
        "bad-signature-input",
        lambda c: post(c.forged(components=("@method", "@authority", "@path", "content-digest"))),
    ),
    (
        "covered components reordered",
        401,
        "bad-signature-input",
        lambda c: post(c.forged(components=("@authority", "@method", "@path", "content-digest", "content-type"))),
    ),
    (
        "extra covered component (@query)",
        401,
        "bad-signature-input",
        lambda c: post(
            c.forged(components=("@method", "@authority", "@path", "content-digest", "content-type", "@query"))
        ),
    ),
    (
        "alg hmac-sha256 keyed with the device public key",
        401,
        "bad-signature-input",
        lambda c: _hmac_alg(c, "hmac-sha256", "sha256"),
    ),
    (
        "HMAC-SHA256 without alg (32-byte signature)",
        401,
        "bad-signature-input",
        lambda c: _hmac_alg(c, None, "sha256"),
    ),
    (
        "HMAC-SHA512 without alg (64 bytes, like Ed25519)",
        401,
        "bad-signature",
        lambda c: _hmac_alg(c, None, "sha512"),
    ),
    (
        "alg rsa-pss-sha512 claimed",
        401,
        "bad-signature-input",
        lambda c: post(c.forged(params=_params(c, alg="rsa-pss-sha512"))),
    ),
    ("second signature added by an attacker", 401, "bad-signature-input", _second_signature),
    ("second member only in Signature", 401, "bad-signature-input", _signature_header_only_second),
    ("Signature-Input sent twice (same label)", 401, "bad-signature-input", _two_field_lines),
    ("signature relabelled sig1", 401, "bad-signature-input", lambda c: post(c.forged(label="sig1"))),
    ("zeroed signature", 401, "bad-signature", _zero_sig),
    ("malleated signature (S + L)", 401, "bad-signature", _malleated),
    ("keyid of another tablet, signed by this one", 401, "bad-signature", _cross_tablet_keyid),
    (
        "keyid in upper-case hex",
        401,
        "bad-signature-input",
        lambda c: post(c.forged(params=_params(c, keyid=key_id(bytes(c.tablet.verify_key)).hex().upper()))),
    ),
    (
        "expires parameter",
        401,
        "bad-signature-input",
        lambda c: post(c.forged(params=_params(c, expires=int(time.time()) + 60))),
    ),
    (
        "created as a string",
        401,
        "bad-signature-input",
        lambda c: post(c.forged(params=_params(c, created=str(int(time.time()))))),
    ),
    ("nonce too short", 401, "bad-signature-input", lambda c: post(c.forged(params=_params(c, nonce="abc")))),
    (
        "nonce with forbidden characters",
        401,
        "bad-signature-input",
        lambda c: post(c.forged(params=_params(c, nonce="a" * 15 + "/="))),
    ),
    (
        "tag of another protocol",
        401,
        "bad-signature-input",
        lambda c: post(c.forged(params=_params(c, tag="other/v1"))),
    ),
    ("signed for another authority", 401, "bad-signature", lambda c: post(c.forged(authority="gateway.example:8443"))),
    ("signed for /v1/custody, sent to /v1/batches", 401, "bad-signature", lambda c: post(c.forged(path="/v1/custody"))),
    (
        "signed as PUT, sent as POST",
        401,
        "bad-signature",
        lambda c: ("POST", f"{c.gw.url}/v1/batches", c.forged(method="PUT").headers(), c.envelope),
    ),
    (
        "percent-encoded path variant of the signed path",
        401,
        "bad-signature",
        lambda c: ("POST", f"{c.gw.url}/v1/%62atches", c.forged().headers(), c.envelope),
    ),
    (
        "query string added after signing",
        401,
        "bad-signature-input",
        lambda c: ("POST", f"{c.gw.url}/v1/batches?x=1", c.forged().headers(), c.envelope),
    ),
    (
        "Content-Digest sha-512 only",
        400,
        "digest-mismatch",
        _digest("sha-512=:" + _b64(hashlib.sha512(b"x").digest()) + ":"),
    ),
    (
        "Content-Digest with a second member",
        400,
        "digest-mismatch",
        lambda c: post(
            c.forged(
                digest=httpsig.content_digest(c.envelope)
                + ", sha-512=:"
                + _b64(hashlib.sha512(c.envelope).digest())
                + ":"
            )
        ),
    ),
    (
        "Content-Digest of the body sent, signature over another digest",
        401,
        "bad-signature",
        _swap_digest,
    ),
    (
        "Signature-Input larger than 4096 bytes",
        413,
        "oversize",
        lambda c: post(c.forged(params=(*_params(c, nonce=None), ("nonce", "n" * 5000)))),
    ),
]


@pytest.mark.parametrize(("name", "status", "code", "build"), CASES, ids=[c[0] for c in CASES])
async def test_request_signature_attack(
    name: str, status: int, code: str, build: Build, world: World, tmp_path: Path, session, sheets, fault_ledger
) -> None:
    async with gateway_for(world, tmp_path / "c.db") as gw:
        ctx = Ctx(world, gw, world.batch("TAB-0001", 1, sheets("TAB-0001", 1)))
        before = store_state(gw.db_path)
        method, url, headers, body = build(ctx)
        answer = await send(session, method, url, headers, body)
        after = store_state(gw.db_path)
    accepted = answer.status == 200
    fault_ledger.add(inputs=1, forgeries_tried=int(status != 200), forgeries=int(accepted and status != 200),
                     crashes=int(answer.status >= 500))
    assert answer.status == status, answer
    if status == 200:
        assert after.counts["batches"] == before.counts["batches"] + 1
        return
    assert answer.code == code, answer
    assert answer.body["type"] == f"urn:sanaq:problem:{code}"
    assert isinstance(answer.body["server_time_ms"], int)
    assert after == before


# ---- replays and nonces ----------------------------------------------------------------------------


async def _state_get(session: aiohttp.ClientSession, gw: Gateway, key: SigningKey, device: str, n: str) -> int:
    url = f"{gw.url}/v1/devices/{device}/state"
    return (await send(session, "GET", url, sign("GET", url, key, nonce=n))).status


REPLAYS = [
    "exact replay of an accepted batch request",
    "nonce reused for a different batch",
    "nonce reused on another endpoint",
    "exact replay of a state request",
    "exact replay of a registry request",
    "nonce of tablet A used by tablet B",
]


@pytest.mark.parametrize("case", REPLAYS)
async def test_replay_within_the_window(case: str, world: World, tmp_path: Path, session, sheets, fault_ledger) -> None:
    async with gateway_for(world, tmp_path / "c.db") as gw:
        n = nonce()
        a, b = world.tablets["TAB-0001"], world.tablets["TAB-0002"]
        env1 = world.batch("TAB-0001", 1, sheets("TAB-0001", 1))
        url = f"{gw.url}/v1/batches"
        if "state" in case:
            assert await _state_get(session, gw, a, "TAB-0001", n) == 200
        elif "registry" in case:
            rurl = f"{gw.url}/v1/registry"
            headers = sign("GET", rurl, a, nonce=n)
            assert (await send(session, "GET", rurl, headers)).status == 200
        else:
            headers = sign("POST", url, a, env1, BATCH, nonce=n)
            assert (await send(session, "POST", url, headers, env1)).status == 200
        before = store_state(gw.db_path)
        if case == "exact replay of an accepted batch request":
            answer = await send(session, "POST", url, headers, env1)
        elif case == "nonce reused for a different batch":
            env2 = world.batch("TAB-0001", 2, sheets("TAB-0001", 2))
            answer = await send(session, "POST", url, sign("POST", url, a, env2, BATCH, nonce=n), env2)
        elif case == "nonce reused on another endpoint":
            status = await _state_get(session, gw, a, "TAB-0001", n)
            answer = type("A", (), {"status": status, "code": "replay"})()
        elif case in ("exact replay of a state request", "exact replay of a registry request"):
            target = f"{gw.url}/v1/devices/TAB-0001/state" if "state" in case else f"{gw.url}/v1/registry"
            answer = await send(session, "GET", target, sign("GET", target, a, nonce=n))
        else:
            env_b = world.batch("TAB-0002", 1, sheets("TAB-0002", 1))
            answer = await send(session, "POST", url, sign("POST", url, b, env_b, BATCH, nonce=n), env_b)
        after = store_state(gw.db_path)
    per_key = case == "nonce of tablet A used by tablet B"
    fault_ledger.add(inputs=2, forgeries_tried=int(not per_key), forgeries=int(answer.status == 200 and not per_key))
    if per_key:  # nonces are unique per signing key: another key's nonce is not a replay
        assert answer.status == 200
        assert after.counts["batches"] == before.counts["batches"] + 1
        return
    assert (answer.status, answer.code) == (401, "replay")
    assert after.counts == before.counts
    assert after.digests["batches"] == before.digests["batches"]


@pytest.mark.parametrize("who", ["station", "tablet"])
async def test_revoked_station_and_lost_tablet_signers_are_refused_everywhere(
    who: str, world: World, tmp_path: Path, session, sheets, fault_ledger
) -> None:
    signer = "ST-01" if who == "station" else "TAB-0003"
    world.status[signer] = "revoked" if who == "station" else "lost"
    key = world.stations[signer] if who == "station" else world.tablets[signer]
    async with gateway_for(world, tmp_path / "c.db") as gw:
        before = store_state(gw.db_path)
        env = world.batch("TAB-0001", 1, sheets("TAB-0001", 1))
        url = f"{gw.url}/v1/batches"
        answers = [await send(session, "POST", url, sign("POST", url, key, env, BATCH), env)]
        for path in ("/v1/registry", "/v1/devices/TAB-0001/state"):
            answers.append(await send(session, "GET", gw.url + path, sign("GET", gw.url + path, key)))
        after = store_state(gw.db_path)
        events = security_events(gw.db_path)
    fault_ledger.add(inputs=len(answers), forgeries_tried=len(answers), forgeries=sum(a.status == 200 for a in answers))
    assert [(a.status, a.code) for a in answers] == [(403, "revoked")] * 3
    assert after == before
    assert [e[0] for e in events] == ["revoked-signer"] * 3
