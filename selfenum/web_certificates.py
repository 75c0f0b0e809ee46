"""Participation certificates on the public site: the verification page and the respondent's download.

``GET /certificate`` shows a form; ``POST /certificate`` verifies the QR text
pasted into it (``keys.certificates.check``: the root key of the service's
bundle, revocations from the newest registry snapshot it holds) and says
valid, invalid or revoked, showing only what the certificate itself shows.
The input is bounded twice: the body cap of the whole site, then
``MAX_INPUT_BYTES`` for the field. Logs carry the verdict and its code only,
never the certificate or what it names.

``GET /done/certificate.pdf`` gives a signed-in respondent whose sheet has
reached the census database (a receipt is held) their certificate, issued
with the service's certificate key (``certificates.key_dir``).
"""

from __future__ import annotations

import asyncio
import re

import structlog
from aiohttp import web

from keys.certificate_pdf import PrintedCertificate, render_certificates_pdf
from keys.certificates import MAX_INPUT_BYTES, Verdict, certificate_day, check

from .context import APP, SelfenumApp
from .questionnaire import FieldError
from .web_pages import _lang, _render, _session

__all__ = ["ROAD_LABELS", "add_certificate_routes", "certificate_available"]

log = structlog.get_logger("selfenum.certificate")

ROAD_LABELS = {
    "tablet": "Interview on a tablet",
    "usb": "Interview on a tablet, delivered on an electronic medium",
    "web": "Online, through the Internet",
}
SUBJECT_LABELS = {"entry": "Entry in the list of respondents", "sheet": "Census sheet number"}
VERDICT_TITLES = {
    "valid": "This certificate of census participation is valid",
    "invalid": "This is not a valid certificate of census participation",
    "revoked": "This certificate of census participation has been withdrawn",
}
VERDICT_TEXT = {
    "valid": "It was issued by the census authority and has not been changed.",
    "invalid": "It was changed or damaged, or it was not issued by the census authority.",
    "revoked": "It was issued with a key that the census authority has withdrawn. Ask the responsible worker "
               "of your institution for a new certificate.",
}
FORM_TITLE = "Check a certificate of census participation"
FIELD_MISSING = "Paste the text of the QR code"
FIELD_TOO_LONG = "The text is too long to be a certificate"
_ENTRY = re.compile(r"[A-Z]{2}-[0-9]{6}/[0-9]{5}")
_UTC_OFFSET_MIN = 300  # Astana time in 2020, the census local time of the web road (docs/selfenum.md)


def _revoked(se: SelfenumApp) -> frozenset[bytes] | None:
    snap = se.trust.cache.snapshot if se.trust is not None else None
    return snap.revoked_certificate_keys if snap is not None else None


async def get_form(request: web.Request) -> web.StreamResponse:
    se = request.app[APP]
    return _render(request, se, "certificate.html", title=FORM_TITLE, verdict=None, shown=[], value="")


def _shown(verdict: Verdict) -> list[tuple[str, str, bool]]:
    """(label msgid, value, value is a msgid): the certificate's members and issuer, for valid and revoked ones."""
    cert = verdict.certificate
    if cert is None or verdict.status == "invalid":
        return []
    return [("Census", cert.census, False), (SUBJECT_LABELS[cert.subject_kind], cert.subject_id, False),
            ("Day of enumeration", cert.day, False),
            ("How the respondent was enumerated", ROAD_LABELS[cert.road], True),
            ("Issued by", cert.key.issuer, False)]


async def post_form(request: web.Request) -> web.StreamResponse:
    se = request.app[APP]
    form = await request.post()
    value = form.get("certificate")
    text = value.strip() if isinstance(value, str) else ""
    error = FIELD_MISSING if not text else FIELD_TOO_LONG if len(text) > MAX_INPUT_BYTES else None
    if error is not None:
        return _render(request, se, "certificate.html", title=FORM_TITLE, status=400, verdict=None, shown=[],
                       value="", errors=[FieldError("certificate", error)])
    verdict = check(text.encode("utf-8"), se.bundle.root_public_key, _revoked(se))
    se.counters[f"certificates_{verdict.status}"] = se.counters.get(f"certificates_{verdict.status}", 0) + 1
    log.info("selfenum.certificate.checked", status=verdict.status, code=verdict.code,
             revocation_checked=verdict.revocation_checked)
    return _render(request, se, "certificate.html", title=VERDICT_TITLES[verdict.status], verdict=verdict,
                   verdict_text=VERDICT_TEXT[verdict.status], shown=_shown(verdict), value="")


def certificate_available(se: SelfenumApp, entry_id: str, received_at_ms: int | None) -> bool:
    """A key that is not revoked, a sheet that reached the census database, a list entry to name."""
    if se.issuer is None or received_at_ms is None or not _ENTRY.fullmatch(entry_id):
        return False
    return se.issuer.key.key_id not in (_revoked(se) or frozenset())


async def get_pdf(request: web.Request) -> web.StreamResponse:
    se = request.app[APP]
    s = _session(request, se)
    row = se.store.code(s.code_hash) if s is not None else None
    sub = se.store.submission(row.entry_id) if row is not None else None
    if sub is None:
        raise web.HTTPSeeOther("/")
    if se.issuer is None or not certificate_available(se, sub.entry_id, sub.received_at_ms):
        raise web.HTTPSeeOther("/done")
    assert sub.received_at_ms is not None
    cert = se.issuer.issue_checked(subject=f"entry:{sub.entry_id}", road="web",
                                   day=certificate_day(sub.received_at_ms, _UTC_OFFSET_MIN))
    printed = PrintedCertificate(cert, se.config.certificates.issuer_name)
    where = se.config.server.public_url.rstrip("/") + "/certificate"
    pdf = await asyncio.to_thread(render_certificates_pdf, [printed], font=se.config.pdf_font, verify_where=where)
    se.counters["certificates_issued"] = se.counters.get("certificates_issued", 0) + 1
    log.info("selfenum.certificate.issued", seq=sub.seq, lang=_lang(request))
    return web.Response(body=pdf, content_type="application/pdf",
                        headers={"Content-Disposition": 'attachment; filename="certificate.pdf"'})


def add_certificate_routes(app: web.Application) -> None:
    app.router.add_get("/certificate", get_form)
    app.router.add_post("/certificate", post_form)
    app.router.add_get("/done/certificate.pdf", get_pdf)
