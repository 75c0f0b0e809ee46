"""certificate.json: participation certificates (section 7.4), valid and refused.

A case's ``carrier`` is the certificate-key document followed by the
certificate document (hex); ``text`` is its QR text where the case is about
the text form. ``revoked`` names the certificate keys a case's verifier holds
as revoked (snapshot member ``revoked_certificate_keys``).
"""

from __future__ import annotations

import base64
from typing import Any

from gen_documents import LABELS, flip, raw_document
from gen_keys import CENSUS, CERT_ISSUER, KEYS, T_ISSUED

from wire import canonical
from wire.certificate import carrier_to_text, make_certificate, make_certificate_key

__all__ = ["certificate_vectors"]

ENTRY = "AT-000123/00042"
SHEET = "0f8fad5b-d9cb-469f-a165-70867728950e"


def _key_body(key: str = "certificate", census: str = CENSUS) -> dict[str, Any]:
    return {"v": 1, "census": census, "issuer": CERT_ISSUER, "key_id": KEYS[key].key_id.hex(),
            "public_key": KEYS[key].public.hex(), "issued_at_ms": T_ISSUED}


def _cert_body(subject: str = f"entry:{ENTRY}", day: str = "2020-10-05", road: str = "tablet",
               census: str = CENSUS) -> dict[str, Any]:
    return {"v": 1, "census": census, "subject": subject, "day": day, "road": road}


def _text(carrier: bytes) -> str:
    return "sanaq-cert:" + base64.urlsafe_b64encode(carrier).rstrip(b"=").decode("ascii")


def _case(name: str, description: str, carrier: bytes, expected: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "carrier": carrier.hex(), "expected": expected, **extra}


def _ok(name: str, description: str, cert_body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    key_body = _key_body()
    key_doc = raw_document("certificate-key", key_body, "root")
    cert_doc = raw_document("certificate", cert_body, "certificate")
    made_key = make_certificate_key(census=CENSUS, issuer=CERT_ISSUER, public_key=KEYS["certificate"].public,
                                    issued_at_ms=T_ISSUED, root_key=KEYS["root"].signing_key)
    made_cert = make_certificate(census=cert_body["census"], subject=cert_body["subject"], day=cert_body["day"],
                                 road=cert_body["road"], certificate_key=KEYS["certificate"].signing_key)
    if (made_key, made_cert) != (key_doc, cert_doc):
        raise SystemExit(f"wire.certificate disagrees with vector {name!r}")
    carrier = key_doc + cert_doc
    if carrier_to_text(carrier) != _text(carrier):
        raise SystemExit(f"wire.certificate text form disagrees with vector {name!r}")
    return {
        "name": name,
        "description": description,
        "key_document": {
            "signer": "root",
            "body": key_body,
            "body_text": canonical.encode(key_body).decode(),
            "signing_input": (LABELS["certificate-key"] + key_doc[:-64]).hex(),
            "document": key_doc.hex(),
        },
        "certificate_document": {
            "signer": "certificate",
            "body": cert_body,
            "body_text": canonical.encode(cert_body).decode(),
            "signing_input": (LABELS["certificate"] + cert_doc[:-64]).hex(),
            "document": cert_doc.hex(),
        },
        "carrier": carrier.hex(),
        "text": _text(carrier),
        **extra,
        "expected": "ok",
        "parsed": {k: v for k, v in cert_body.items() if k != "v"} | {"issuer": CERT_ISSUER,
                                                                       "key_id": KEYS["certificate"].key_id.hex()},
    }


def certificate_vectors() -> dict[str, Any]:
    key_doc = raw_document("certificate-key", _key_body(), "root")
    body = _cert_body()
    cert_doc = raw_document("certificate", body, "certificate")
    good = key_doc + cert_doc

    def with_cert(cert_body: dict[str, Any] | bytes, signer: str = "certificate", **kw: Any) -> bytes:
        return key_doc + raw_document("certificate", cert_body, signer, **kw)

    other_key_doc = raw_document("certificate-key", _key_body("other_certificate"), "root")
    foreign_key_doc = raw_document("certificate-key", _key_body(), "other_root")
    subject_at = good.index(b"entry:") + len(b"entry:AT-000123/0004")
    cases = [
        _ok("ok-entry-tablet", "a listed respondent interviewed on a tablet", body),
        _ok("ok-sheet-web", "a respondent who answered online, named by sheet id",
            _cert_body(subject=f"sheet:{SHEET}", day="2020-10-02", road="web")),
        _ok("ok-entry-usb", "a listed respondent whose sheet came by the USB road",
            _cert_body(day="2020-10-30", road="usb")),
        _case("ok-revoked-other", "valid; another certificate key is revoked", good, "ok",
              revoked=["other_certificate"]),
        _case("revoked", "genuine, but its certificate key is listed as revoked", good, "revoked",
              revoked=["certificate"]),
        _case("tampered-subject", "subject entry number changed after signing (still canonical)",
              flip(good, subject_at, 0x03), "bad-signature"),
        _case("tampered-key-document", "the certified public key changed by one bit after the root signed it",
              flip(key_doc, key_doc.index(b'"public_key":"') + 20, 0x01) + cert_doc, "bad-signature"),
        _case("flip-signature", "last signature byte of the certificate flipped", flip(good, len(good) - 1),
              "bad-signature"),
        _case("other-key", "validly signed by a key the root did not certify, paired with a certified key's "
              "document", with_cert(body, "other_certificate"), "unknown-key"),
        _case("other-key-own-document", "signed by a key whose certificate-key document the root did not sign "
              "(signed by another root)", raw_document("certificate-key", _key_body("other_certificate"),
                                                       "other_root") + raw_document("certificate", body,
                                                                                    "other_certificate"),
              "unknown-key"),
        _case("key-document-other-root", "the certificate key certified by another root",
              foreign_key_doc + cert_doc, "unknown-key"),
        _case("key-document-swapped", "a genuine certificate paired with another certified key's document",
              other_key_doc + cert_doc, "unknown-key"),
        _case("signer-id-swapped", "signed by other_certificate but naming the certified key id",
              with_cert(body, "other_certificate", signer_key_id=KEYS["certificate"].key_id), "bad-signature"),
        _case("wrong-label", "certificate signed with the label of certificate-key",
              with_cert(body, label=LABELS["certificate-key"]), "bad-signature"),
        _case("census-mismatch", "certificate names another census than its key, signed",
              with_cert(_cert_body(census="KZ-2021")), "binding-mismatch"),
        _case("order-swapped", "certificate first, key document second", cert_doc + key_doc, "malformed"),
        _case("key-document-only", "the key document alone", key_doc, "truncated"),
        _case("empty", "zero bytes", b"", "truncated"),
        _case("truncated", "last signature byte missing", good[:-1], "truncated"),
        _case("trailing-byte", "one byte after the certificate", good + b"\x00", "trailing-bytes"),
        _case("oversize", "a carrier longer than 2048 bytes", key_doc + raw_document(
            "certificate", {**body, "pad": "x" * 2000}, "certificate"), "oversize"),
        _case("certificate-version-2", "certificate container version 2, signed",
              with_cert(body, version=2), "unsupported-version"),
        _case("subject-name", "subject carries a name instead of an id, signed",
              with_cert(_cert_body(subject="name:Әлия Сәрсенова")), "malformed"),
        _case("subject-sheet-uppercase", "sheet id in uppercase, signed",
              with_cert(_cert_body(subject=f"sheet:{SHEET.upper()}")), "malformed"),
        _case("day-not-a-date", "day 2020-02-30, signed", with_cert(_cert_body(day="2020-02-30")), "malformed"),
        _case("road-online", "road 'online' (a receipt's word, not a certificate's), signed",
              with_cert(_cert_body(road="online")), "malformed"),
        _case("extra-member", "an extra member (birth_date), signed",
              with_cert({**body, "birth_date": "1950-01-01"}), "malformed"),
        _case("missing-member", "no road, signed", with_cert({k: v for k, v in body.items() if k != "road"}),
              "malformed"),
    ]
    text_cases = [
        {"name": "text-ok", "description": "the QR text of case ok-entry-tablet", "text": _text(good),
         "expected": "ok", "carrier": good.hex()},
        {"name": "text-padded", "description": "base64url with '=' padding", "text": _text(good) + "=" * (
            -len(_text(good)[len("sanaq-cert:"):]) % 4 or 4), "expected": "malformed"},
        {"name": "text-standard-alphabet", "description": "standard base64 alphabet ('+' and '/')",
         "text": "sanaq-cert:" + base64.b64encode(good).rstrip(b"=").decode(), "expected": "malformed"},
        {"name": "text-prefix", "description": "another prefix", "text": "sanaq-cer:" + _text(good)[11:],
         "expected": "malformed"},
        {"name": "text-newline", "description": "a line break inside the payload",
         "text": _text(good)[:40] + "\n" + _text(good)[40:], "expected": "malformed"},
        {"name": "text-oversize", "description": "longer than 4096 characters",
         "text": "sanaq-cert:" + "A" * 4090, "expected": "oversize"},
    ]
    assert "+" in text_cases[2]["text"] or "/" in text_cases[2]["text"], "pick a carrier whose base64 differs"
    return {
        "vectors": "certificate",
        "spec": "docs/protocol.md, section 7.4 'Participation certificate'",
        "procedure": [
            "Split the carrier after the certificate-key document (25 + body_len + 64 bytes), decode both "
            "documents, verify the key document with 'root', then the certificate with the key it certifies, "
            "check both bodies and that they name one census, then that the key is not among 'revoked' (the "
            "case's, default none). The first failure gives 'expected'.",
            "text_cases: parse the QR text strictly into carrier bytes (then verify as above).",
        ],
        "root": "root",
        "keys": None,
        "cases": cases,
        "text_cases": text_cases,
    }
