"""Participation certificates: every case of ``vectors/certificate.json`` run against ``wire.certificate``.

Valid cases are rebuilt byte for byte from their bodies; refusals give exactly
their code; random bytes and random text raise only ``WireError``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from wire import errors
from wire.certificate import (
    carrier_from_text,
    carrier_to_text,
    make_certificate,
    make_certificate_key,
    verify_certificate,
)
from wire.keyids import key_id

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "certificate.json").read_text("utf-8"))
ROOT = bytes.fromhex(VECTORS["keys"][VECTORS["root"]]["public_key"])


def _kid(name: str) -> bytes:
    return key_id(bytes.fromhex(VECTORS["keys"][name]["public_key"]))


def _seed(name: str) -> SigningKey:
    return SigningKey(bytes.fromhex(VECTORS["keys"][name]["seed"]))


def _code(fn: Any) -> str:
    try:
        fn()
    except errors.WireError as e:
        return e.code
    return "ok"


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_certificate_case(case: dict[str, Any]) -> None:
    carrier = bytes.fromhex(case["carrier"])
    revoked = {_kid(n) for n in case.get("revoked", [])}
    assert _code(lambda: verify_certificate(carrier, ROOT, revoked=revoked)) == case["expected"]
    if case["expected"] != "ok" or "parsed" not in case:
        return
    cert = verify_certificate(carrier, ROOT, revoked=revoked)
    p = case["parsed"]
    assert (cert.census, cert.subject, cert.day, cert.road, cert.key.issuer, cert.key.key_id.hex()) == (
        p["census"], p["subject"], p["day"], p["road"], p["issuer"], p["key_id"])
    kb, cb = case["key_document"]["body"], case["certificate_document"]["body"]
    made = make_certificate_key(census=kb["census"], issuer=kb["issuer"], public_key=bytes.fromhex(kb["public_key"]),
                                issued_at_ms=kb["issued_at_ms"], root_key=_seed("root")) + make_certificate(
        census=cb["census"], subject=cb["subject"], day=cb["day"], road=cb["road"],
        certificate_key=_seed("certificate"))
    assert made == carrier
    assert carrier_to_text(carrier) == case["text"]
    assert carrier_from_text(case["text"]) == carrier


@pytest.mark.parametrize("case", VECTORS["text_cases"], ids=[c["name"] for c in VECTORS["text_cases"]])
def test_certificate_text_case(case: dict[str, Any]) -> None:
    assert _code(lambda: carrier_from_text(case["text"])) == case["expected"]
    if case["expected"] == "ok":
        assert carrier_from_text(case["text"]).hex() == case["carrier"]


def test_the_vectors_cover_the_three_refusals_the_issue_names() -> None:
    by_name = {c["name"]: c["expected"] for c in VECTORS["cases"]}
    assert by_name["tampered-subject"] == "bad-signature"
    assert by_name["other-key"] == "unknown-key"
    assert by_name["revoked"] == "revoked"


def test_makers_refuse_what_parsers_refuse() -> None:
    key = SigningKey(bytes(32))
    for kwargs in ({"subject": "name:Әлия"}, {"day": "2020-13-01"}, {"road": "online"}, {"census": ""}):
        args = {"census": "KZ-2020", "subject": "entry:AT-000123/00001", "day": "2020-10-01", "road": "tablet",
                **kwargs}
        with pytest.raises(errors.DecodeError):
            make_certificate(certificate_key=key, **args)
    with pytest.raises(errors.DecodeError):
        make_certificate_key(census="KZ-2020", issuer="bad id", public_key=bytes(key.verify_key), issued_at_ms=0,
                             root_key=key)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2200))
def test_random_carriers_raise_only_wire_errors(data: bytes) -> None:
    with contextlib.suppress(errors.WireError):
        verify_certificate(data, ROOT)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200).map(lambda t: "sanaq-cert:" + t))
def test_random_text_raises_only_wire_errors(text: str) -> None:
    with contextlib.suppress(errors.WireError):
        carrier_from_text(text)
