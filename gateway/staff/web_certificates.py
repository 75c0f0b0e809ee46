"""Participation certificates on the staff dashboard: one PDF with all of an institution's certificates.

``GET /staff/certificates`` lists the institutions with stored sheets and how
many respondents each has; ``GET /staff/certificates/sheet?id=<sheet id>``
issues one respondent's certificate by sheet number (households, any road);
``GET /staff/certificates/{institution}/pdf``
issues a certificate (docs/protocol.md 7.4) for each respondent of the
institution (its list entry, or the sheet id of an off-list sheet; the first
stored sheet gives the day and the road) and renders them, one page each, in
one PDF. Issuing needs ``staff.certificate_key_dir``; without it the page
says so. Every print is audited with the institution and the count; logs
name counts, never an entry.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from keys.certificate_pdf import PrintedCertificate, render_certificates_pdf
from keys.certificates import CertificateIssuer, certificate_day, certificate_road, certificate_subject
from keys.errors import KeysError
from l10n import N_
from wire.errors import WireError

from .queries import CertifiableSheet
from .state import STAFF, StaffState
from .web_auth import Staffed, staff_handler

__all__ = ["CERTIFICATES", "StaffCertificates", "get_certificate_by_sheet", "get_certificates", "get_certificates_pdf",
           "issue_all"]

log = structlog.get_logger("sanaq.gateway.staff")

_INSTITUTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHEET_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@dataclass(slots=True)
class StaffCertificates:
    """The dashboard's certificate key; ``gate`` lets one PDF render at a time (CPU is the ingest's)."""

    issuer: CertificateIssuer
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))


CERTIFICATES = web.AppKey("sanaq_staff_certificates", StaffCertificates)


def issue_all(issuer: CertificateIssuer, rows: list[CertifiableSheet], *, utc_offset_minutes: int,
              issuer_name: str) -> tuple[list[PrintedCertificate], int]:
    """(certificates in row order, rows skipped because they name no valid entry or sheet id)."""
    printed, skipped = [], 0
    for row in rows:
        try:
            cert = issuer.issue_checked(subject=certificate_subject(row.list_entry, row.sheet_id),
                                        day=certificate_day(row.received_at_ms, utc_offset_minutes),
                                        road=certificate_road(row.road))
        except WireError:
            skipped += 1
            continue
        printed.append(PrintedCertificate(cert, issuer_name))
    return printed, skipped


@staff_handler()
async def get_certificates(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    institutions = await state.queries.certified_institutions()
    return state.views.page("certificates.html", session=staffed.session, institutions=institutions,
                            issuing=request.app.get(CERTIFICATES) is not None,
                            per_pdf=state.config.certificates_per_pdf)


@staff_handler()
async def get_certificates_pdf(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state: StaffState = request.app[STAFF]
    institution = request.match_info["institution"]
    certs = request.app.get(CERTIFICATES)
    if certs is None:
        return _unavailable(state, staffed)
    if not _INSTITUTION.fullmatch(institution):
        return state.views.message(N_("No such institution"), N_("An institution code is 1-64 letters, digits, "
                                   ". _ or -."), status=400, session=staffed.session)
    limit = state.config.certificates_per_pdf
    rows = await state.queries.certifiable_sheets(institution, limit + 1)
    if not rows:
        return state.views.message(N_("No certificates"), N_("No sheet of institution %(institution)s is stored yet."),
                                   status=404, session=staffed.session, institution=institution)
    if len(rows) > limit:
        return state.views.message(N_("Too many certificates"),
                                   N_("Institution %(institution)s has more than %(limit)s "
                                   "respondents with sheets; raise staff.certificates_per_pdf."), status=413,
                                   session=staffed.session, institution=institution, limit=limit)
    return await _pdf_response(request, staffed, certs, rows, what=institution, name=f"certificates-{institution}")


@staff_handler()
async def get_certificate_by_sheet(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state: StaffState = request.app[STAFF]
    certs = request.app.get(CERTIFICATES)
    if certs is None:
        return _unavailable(state, staffed)
    sheet_id = request.query.get("id", "").strip().lower()
    if not _SHEET_ID.fullmatch(sheet_id):
        return state.views.message(N_("Not a sheet number"), N_("A sheet number is the sheet's id, a UUID like "
                                   "0f8fad5b-d9cb-469f-a165-70867728950e."), status=400, session=staffed.session)
    row = await state.queries.certifiable_sheet(sheet_id)
    if row is None:
        return state.views.message(N_("No such sheet"), N_("No stored sheet has the number %(sheet)s."), status=404,
                                   session=staffed.session, sheet=sheet_id)
    return await _pdf_response(request, staffed, certs, [row], what=f"sheet:{sheet_id}", name="certificate")


def _unavailable(state: StaffState, staffed: Staffed) -> web.Response:
    return state.views.message(N_("Certificates unavailable"), N_("This gateway has no certificate key "
                               "(staff.certificate_key_dir); see docs/operations.md."), status=503,
                               session=staffed.session)


async def _pdf_response(request: web.Request, staffed: Staffed, certs: StaffCertificates,
                        rows: list[CertifiableSheet], *, what: str, name: str) -> web.StreamResponse:
    state: StaffState = request.app[STAFF]
    config = state.config
    trust = state.ctx.trust.current
    if trust is not None and certs.issuer.key.key_id in trust.snapshot.revoked_certificate_keys:
        log.warning("staff.certificates.key_revoked", key_id=certs.issuer.key.key_id.hex())
        return state.views.message(N_("Certificate key revoked"), N_("The census authority has revoked this gateway's "
                                   "certificate key: every certificate it would print is invalid. Install a new "
                                   "one (sanaq-keys certificate-key create, docs/operations.md)."), status=503,
                                   session=staffed.session)

    def build() -> tuple[bytes | None, int, int]:
        # Signing, self-verifying and rendering are CPU work: off the event loop, one PDF at a time.
        printed, skipped = issue_all(certs.issuer, rows, utc_offset_minutes=config.utc_offset_minutes,
                                     issuer_name=config.certificate_issuer_name)
        pdf = render_certificates_pdf(printed, font=config.pdf_font,
                                      verify_where=config.certificate_verify_at) if printed else None
        return pdf, len(printed), skipped

    async with certs.gate:
        try:
            pdf, count, skipped = await asyncio.to_thread(build)
        except KeysError as e:
            log.error("staff.certificates.pdf_unavailable", error=str(e))
            return state.views.message(N_("PDF unavailable"), N_("This host cannot write PDF files: %(reason)s"),
                                       status=503, session=staffed.session, reason=str(e))
    if pdf is None:
        return state.views.message(N_("No certificates"), N_("The stored sheets name no list entry or sheet number "
                                   "a certificate can carry."), status=404, session=staffed.session)
    await state.accounts.audit(staffed.session.user.id, "certificates.printed", scope=what, count=count,
                               skipped=skipped)
    log.info("staff.certificates.printed", count=count, skipped=skipped, user_id=staffed.session.user.id)
    return web.Response(body=pdf, content_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'})
