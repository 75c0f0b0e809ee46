"""Access codes on the staff dashboard: mint per institution, revoke, re-issue, register an unlisted resident.

Who: an admin for every institution, a responsible worker (an account bound
to institutions with ``python -m gateway.staff set-institutions``) for those
institutions; anyone else gets 403. Each answer that makes a code is the PDF
of its slips, rendered before the codes are committed and sent once: the
plaintext code is stored nowhere (``Cache-Control: no-store``). Pages that
show names are audited. Logs carry ids and counts, never a name or a code.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from gateway.sheets import load_sheet_schema
from keys.slips import Slip, render_slips
from l10n import N_

from .codes import (
    CodeStatus,
    can_act_for,
    code_statuses,
    institutions_of,
    load_pepper,
    mint_codes,
    register_resident,
    reissue_code,
    revoke_code,
)
from .db import StaffConn
from .errors import PdfUnavailable, StaffInputError
from .lists import RespondentList, load_lists
from .state import STAFF, StaffState
from .views import language_of
from .web_auth import Staffed, staff_handler

__all__ = [
    "get_codes",
    "get_institution_codes",
    "institution_kinds",
    "post_mint",
    "post_reissue",
    "post_resident",
    "post_revoke",
]

log = structlog.get_logger("sanaq.gateway.staff")

_FIELDS = ("entry_id", "institution_kind", "worker_id", "surname", "given_name", "patronymic", "birth_date")


@functools.cache
def institution_kinds() -> tuple[str, ...]:
    """The census-sheet schema's institution kinds (the schema is the one copy of the rules)."""
    return tuple(str(k) for k in load_sheet_schema()["properties"]["institution_kind"]["enum"])


def _renderer(state: StaffState) -> Callable[[str, list[Slip]], bytes]:
    config = state.config

    def render(institution_code: str, slips: list[Slip]) -> bytes:
        return render_slips(institution_code, slips, url=config.selfenum_url, window=config.online_window_text(),
                            font=config.pdf_font)

    return render


def _pepper(state: StaffState) -> bytes:
    return load_pepper(state.pepper_path)


def _pdf(data: bytes, name: str) -> web.Response:
    return web.Response(body=data, content_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


@staff_handler()
async def get_codes(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    user = staffed.session.user

    def read(c: StaffConn) -> tuple[list[RespondentList], dict[str, tuple[int, int]]]:
        mine = None if user.is_admin else institutions_of(c, user.id)
        lists = [rl for rl in load_lists(c) if mine is None or rl.institution_code in mine]
        counts = {
            r[0]: (r[1], r[2])
            for r in c.execute(
                "SELECT institution_code, count(*) FILTER (WHERE status = 'active'),"
                " count(*) FILTER (WHERE status = 'revoked') FROM access_codes"
                " GROUP BY institution_code")
        }
        return lists, counts

    lists, counts = await state.db.run(read)
    return state.views.page("codes.html", session=staffed.session, lists=lists, counts=counts,
                            url=state.config.selfenum_url, window=state.config.online_window_text())


async def _institution_page(request: web.Request, staffed: Staffed, institution: str, *, error: str | None = None,
                            form: dict[str, str] | None = None) -> web.Response:
    state = request.app[STAFF]
    rows: list[CodeStatus] = await state.db.run(lambda c: code_statuses(c, institution))
    await state.accounts.audit(staffed.session.user.id, "codes.viewed", institution=institution, rows=len(rows))
    return state.views.page(
        "codes_institution.html",
        status=400 if error else 200,
        session=staffed.session,
        institution=institution,
        rows=rows,
        kinds=institution_kinds(),
        error=error,
        form=form or {},
    )


def _guarded(view: Callable[[web.Request, Staffed, str], Awaitable[web.StreamResponse]]
             ) -> Callable[[web.Request, Staffed], Awaitable[web.StreamResponse]]:
    """The institution of the path must be one the signed-in account acts for (else 403)."""

    @functools.wraps(view)
    async def guarded(request: web.Request, staffed: Staffed) -> web.StreamResponse:
        state = request.app[STAFF]
        institution = request.match_info["institution"]
        user = staffed.session.user
        if not await state.db.run(lambda c: can_act_for(c, user, institution)):
            log.info("staff.codes.forbidden", user_id=user.id, institution=institution)
            return state.views.message(N_("Not allowed"), N_("You are not a responsible worker of this institution."),
                                       status=403, session=staffed.session)
        return await view(request, staffed, institution)

    return guarded


@staff_handler()
@_guarded
async def get_institution_codes(request: web.Request, staffed: Staffed, institution: str) -> web.StreamResponse:
    return await _institution_page(request, staffed, institution)


def _form(staffed: Staffed) -> dict[str, str]:
    if staffed.form is None:
        return dict.fromkeys(_FIELDS, "")
    return {k: str(staffed.form.get(k, ""))[:200] for k in _FIELDS}


async def _make(request: web.Request, staffed: Staffed, institution: str, form: dict[str, str],
                job: Callable[[StaffConn, bytes, Callable[[str, list[Slip]], bytes]], bytes], *, event: str,
                file_name: str) -> web.StreamResponse:
    """Run a minting job (PDF rendered inside its transaction); answer the PDF or the page with the error."""
    state = request.app[STAFF]
    if staffed.form is None:
        return state.views.message(N_("Form not understood"), N_("Send the page's own form."), status=400,
                                   session=staffed.session)
    if not state.config.pdf_font.is_file():
        log.error("staff.codes.pdf_unavailable", font=str(state.config.pdf_font))
        return state.views.message(N_("PDF unavailable"), N_("This host cannot write PDF files: %(reason)s"),
                                   status=503, session=staffed.session,
                                   reason=str(PdfUnavailable(f"font {state.config.pdf_font} missing")))
    try:
        pepper = await asyncio.to_thread(_pepper, state)
        render = _renderer(state)
        pdf = await state.db.run(lambda c: job(c, pepper, render))
    except StaffInputError as e:
        error = state.views.error_text(language_of(request, staffed.session, state.config), e)
        return await _institution_page(request, staffed, institution, error=error, form=form)
    log.info(event, institution=institution, user_id=staffed.session.user.id)
    state.feed.poke(lists_changed=True)
    return _pdf(pdf, file_name)


@staff_handler()
@_guarded
async def post_mint(request: web.Request, staffed: Staffed, institution: str) -> web.StreamResponse:
    state = request.app[STAFF]
    form, user, now = _form(staffed), staffed.session.user, state.ctx.clock()

    def job(c: StaffConn, pepper: bytes, render: Callable[[str, list[Slip]], bytes]) -> bytes:
        minted, pdf = mint_codes(c, pepper, user, institution, institution_kind=form["institution_kind"],
                                 worker_id=form["worker_id"], kinds=institution_kinds(), now_ms=now, render=render)
        log.info("staff.codes.minted", institution=institution, codes=len(minted.slips), skipped=minted.skipped,
                 user_id=user.id)
        return pdf

    return await _make(request, staffed, institution, form, job, event="staff.codes.slips_sent",
                       file_name=f"slips-{institution}.pdf")


@staff_handler()
@_guarded
async def post_reissue(request: web.Request, staffed: Staffed, institution: str) -> web.StreamResponse:
    state = request.app[STAFF]
    form, user, now = _form(staffed), staffed.session.user, state.ctx.clock()
    entry_id = form["entry_id"]
    if not entry_id.startswith(institution + "/"):
        return await _institution_page(request, staffed, institution, error="entry_id: not of this institution")

    def job(c: StaffConn, pepper: bytes, render: Callable[[str, list[Slip]], bytes]) -> bytes:
        return reissue_code(c, pepper, user, entry_id, institution_kind=form["institution_kind"],
                            worker_id=form["worker_id"], kinds=institution_kinds(), now_ms=now, render=render)

    return await _make(request, staffed, institution, form, job, event="staff.codes.reissued",
                       file_name=f"slip-{entry_id.replace('/', '-')}.pdf")


@staff_handler()
@_guarded
async def post_revoke(request: web.Request, staffed: Staffed, institution: str) -> web.StreamResponse:
    state = request.app[STAFF]
    form, user, now = _form(staffed), staffed.session.user, state.ctx.clock()
    entry_id = form["entry_id"]
    try:
        if not entry_id.startswith(institution + "/"):
            raise StaffInputError(N_("not of this institution"), field="entry_id")
        await state.db.run(lambda c: revoke_code(c, user, entry_id, now_ms=now))
    except StaffInputError as e:
        return await _institution_page(request, staffed, institution, error=f"{e.field}: {e}", form=form)
    log.info("staff.codes.revoked", institution=institution, user_id=user.id)
    return web.Response(status=303, headers={"Location": f"/staff/codes/{institution}"})


@staff_handler()
@_guarded
async def post_resident(request: web.Request, staffed: Staffed, institution: str) -> web.StreamResponse:
    """Register an unlisted resident (an addition to the list) and answer the slip of their new code."""
    state = request.app[STAFF]
    form, user, now = _form(staffed), staffed.session.user, state.ctx.clock()

    def job(c: StaffConn, pepper: bytes, render: Callable[[str, list[Slip]], bytes]) -> bytes:
        entry, pdf = register_resident(c, pepper, user, institution, form, institution_kind=form["institution_kind"],
                                       worker_id=form["worker_id"], kinds=institution_kinds(), now_ms=now,
                                       render=render)
        log.info("staff.lists.resident_added", entry_id=entry.entry_id, user_id=user.id)
        return pdf

    return await _make(request, staffed, institution, form, job, event="staff.codes.resident_slip_sent",
                       file_name=f"slip-{institution}-new.pdf")
