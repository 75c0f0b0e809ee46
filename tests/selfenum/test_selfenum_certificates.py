"""Participation certificates on the public site, over real HTTP against a real gateway.

A respondent who answered online downloads a PDF certificate from the
confirmation page; its QR code, read back from the rendered page, verifies on
the public verification page. Tampered text, a certificate signed by another
key and one whose key the authority revoked (the revocation reaching the
service in a snapshot pushed to the gateway) are refused, showing nothing of
what they claim; logs name verdicts, never what a certificate names.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from nacl.signing import SigningKey

from keys.certificates import create_certificate_key
from selfenum.config import CertificatesConfig
from selfenum.context import APP
from selfenum.i18n import Catalogs
from tests.gateway.harness import until
from tests.pdf_tools import pdf_text, qr_texts
from wire.certificate import carrier_from_text, carrier_to_text, make_certificate

from .bed import ANSWERS, INSTITUTION, Env, Gateway, Web, mint, now_ms, selfenum_config, serve_selfenum
from .browserless import Respondent

ENTRY1 = f"{INSTITUTION}/00001"
VALID_TITLE_KK = "Халық санағынан өту туралы бұл анықтама жарамды"


@pytest.fixture
async def cert_site(env: Env, gw: Gateway, tmp_path: Path) -> AsyncIterator[tuple[Web, Any]]:
    create_certificate_key(env.authority, tmp_path / "cert-web", issuer="WEB-AST-01", census="KZ-2020",
                           now_ms=now_ms())
    base = selfenum_config(env, tmp_path / "selfenum", gw.url)
    config = dataclasses.replace(base, certificates=CertificatesConfig(key_dir=tmp_path / "cert-web"),
                                 forward=dataclasses.replace(base.forward, registry_refresh_s=0.05))
    codes = mint(config)
    site = await serve_selfenum(config)
    yield site, codes
    await site.stop()


async def _answer_and_download(site: Web, code: str, tmp_path: Path) -> bytes:
    r = Respondent(site.url)
    try:
        await r.sign_in(code)
        await r.fill(ANSWERS)
        status, page, path = await r.post("/submit", {})
        assert (status, path) == (200, "/done")
        assert 'href="/done/certificate.pdf"' in page and "анықтаманы жүктеп алу" in page
        async with r.session.get(site.url + "/done/certificate.pdf") as resp:
            assert resp.status == 200 and resp.content_type == "application/pdf"
            assert resp.headers["Cache-Control"] == "no-store"
            pdf = await resp.read()
    finally:
        await r.close()
    (tmp_path / "certificate.pdf").write_bytes(pdf)
    return pdf


def _qr_text(pdf_path: Path, tmp_path: Path) -> str:
    [text] = qr_texts(pdf_path, tmp_path)
    return text


async def _verify(site: Web, text: str) -> tuple[int, str]:
    r = Respondent(site.url)
    try:
        await r.get("/certificate")
        status, page, _ = await r.post("/certificate", {"certificate": text})
        return status, page
    finally:
        await r.close()


async def test_download_then_verify_online_and_refusals(cert_site: tuple[Web, Any], env: Env, gw: Gateway,
                                                        tmp_path: Path) -> None:
    site, codes = cert_site
    await _answer_and_download(site, codes[ENTRY1], tmp_path)
    layer = pdf_text(tmp_path / "certificate.pdf")
    assert "Халық санағынан өту туралы анықтама" in layer and ENTRY1 in layer and "Интернет" in layer
    assert "Жұмабаева" not in layer  # no name on the certificate
    text = _qr_text(tmp_path / "certificate.pdf", tmp_path)

    with structlog.testing.capture_logs() as logs:
        status, page = await _verify(site, "  " + text + "\n")  # as pasted from a phone
    assert status == 200 and VALID_TITLE_KK in page
    assert ENTRY1 in page and "WEB-AST-01" in page and "Онлайн режимде" in page
    assert "Жұмабаева" not in page
    assert [e["status"] for e in logs if e["event"] == "selfenum.certificate.checked"] == ["valid"]
    assert ENTRY1 not in repr(logs) and text[20:60] not in repr(logs)

    carrier = bytearray(carrier_from_text(text))
    carrier[carrier.index(ENTRY1.encode()) + len(ENTRY1) - 1] ^= 0x01  # ...00001 -> ...00000
    key_doc_len = 25 + int.from_bytes(carrier[21:25], "big") + 64
    forged = bytes(carrier[:key_doc_len]) + make_certificate(
        census="KZ-2020", subject=f"entry:{INSTITUTION}/00002", day="2020-10-02", road="web",
        certificate_key=SigningKey.generate())
    for given, code in ((carrier_to_text(bytes(carrier)), "bad-signature"), (carrier_to_text(forged), "unknown-key"),
                        (text + "*", "malformed")):
        status, page = await _verify(site, given)
        assert status == 200 and "жарамды анықтама емес" in page and f"<strong>{code}</strong>" in page
        assert INSTITUTION not in page  # an invalid certificate shows nothing of what it claims

    # The authority revokes the key; the snapshot reaches the gateway, the service follows it.
    [record] = env.authority.registry.list_certificate_keys()
    env.authority.registry.revoke_certificate_key(record.key_id, reason="key exposed", now_ms=now_ms())
    snapshot = env.authority.publish(now_ms=now_ms(), validity_ms=7 * 86_400_000)
    async with aiohttp.ClientSession() as s, s.put(gw.url + "/v1/registry", data=snapshot,
                                                  headers={"Content-Type": "application/vnd.sanaq.snapshot"}) as r:
        assert r.status == 200
    se = site.app[APP]
    await until(lambda: se.trust is not None and se.trust.cache.snapshot is not None
                and bool(se.trust.cache.snapshot.revoked_certificate_keys), timeout_s=20, what="snapshot followed")
    status, page = await _verify(site, text)
    assert status == 200 and "күші жойылған" in page and ENTRY1 in page
    # ... and issues no more certificates with the revoked key.
    r = Respondent(site.url)
    try:
        status, page, path = await r.sign_in(codes[ENTRY1])
        assert (status, path) == (200, "/done") and "certificate.pdf" not in page
        async with r.session.get(site.url + "/done/certificate.pdf", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/done"
    finally:
        await r.close()


async def test_the_verification_page_bounds_its_input(cert_site: tuple[Web, Any]) -> None:
    site, _ = cert_site
    r = Respondent(site.url)
    try:
        _, start = await r.get("/")
        assert 'href="/certificate"' in start  # reachable from the site's first page, in Kazakh
        assert "Халық санағынан өту туралы анықтаманы тексеру" in start
    finally:
        await r.close()
    status, page = await _verify(site, "")
    assert status == 400 and "QR-кодтың мәтінін қойыңыз" in page and 'href="#certificate"' in page
    status, page = await _verify(site, "sanaq-cert:" + "A" * 5000)
    assert status == 400 and "тым ұзын" in page
    r = Respondent(site.url)
    try:
        await r.get("/certificate")
        status, _, _ = await r.post("/certificate", {"certificate": "x" * 40_000})  # above the site's body cap
        assert status == 413
    finally:
        await r.close()


async def test_no_download_before_the_sheet_is_sent(cert_site: tuple[Web, Any]) -> None:
    site, codes = cert_site
    r = Respondent(site.url)
    try:
        await r.sign_in(codes[ENTRY1])
        async with r.session.get(site.url + "/done/certificate.pdf", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/"
    finally:
        await r.close()
    async with aiohttp.ClientSession() as s, s.get(site.url + "/done/certificate.pdf", allow_redirects=False) as resp:
        assert resp.status == 303  # no session at all


def test_every_certificate_message_is_translated() -> None:
    from selfenum import web_certificates as wc

    msgids = {*wc.ROAD_LABELS.values(), *wc.SUBJECT_LABELS.values(), *wc.VERDICT_TITLES.values(),
              *wc.VERDICT_TEXT.values(), wc.FORM_TITLE, wc.FIELD_MISSING, wc.FIELD_TOO_LONG,
              "Census", "Day of enumeration", "How the respondent was enumerated", "Issued by",
              "Download your certificate of census participation (PDF)"}
    template = (Path(wc.__file__).parent / "templates" / "certificate.html").read_text("utf-8")
    msgids |= set(re.findall(r'_\("([^"]+)"\)', template))
    catalogs = Catalogs()
    for lang in ("kk", "ru"):
        assert catalogs.missing(lang, sorted(msgids)) == [], lang
