"""Staff pages: the live dashboard, its JSON and event stream, and the custody acts."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import structlog
from aiohttp import web

from l10n import N_

from .act_pdf import act_paper, render_act_pdf
from .acts import ACCESSORIES, get_act, last_acts, list_acts, parse_act_form, reconcile, record_act
from .errors import PdfUnavailable, StaffInputError, StaffStoreError
from .state import STAFF, StaffState
from .views import language_of, with_security_headers
from .web_auth import COOKIE, Staffed, staff_handler

__all__ = ["get_act_page", "get_act_pdf", "get_acts", "get_dashboard", "get_events", "get_summary", "post_act"]

log = structlog.get_logger("sanaq.gateway.staff")


@staff_handler()
async def get_dashboard(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    model = await state.feed.current()
    return state.views.page("dashboard.html", session=staffed.session, model=model)


@staff_handler(api=True)
async def get_summary(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    model = await state.feed.current()
    return web.json_response({"version": state.feed.version, **model.summary()})


@staff_handler(api=True)
async def get_events(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    """Server-sent events: ``update`` with the re-rendered sections whenever the data changed.

    The session is re-checked before every message; when it ends the stream
    sends ``expired`` and closes, and the page goes back to the login form.
    """
    state = request.app[STAFF]
    feed = state.feed
    token = request.cookies.get(COOKIE)
    lang = language_of(request, staffed.session, state.config)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    with_security_headers(response)
    await response.prepare(request)
    sent = 0
    try:
        with feed.watching():  # the feed rebuilds the model in the background only while a stream is open
            await feed.refresh()
            while not feed.closed:
                if await state.accounts.session(token, touch=False) is None:
                    await response.write(b"event: expired\ndata: {}\n\n")
                    break
                if feed.version > sent:
                    sent = feed.version
                    payload = json.dumps({"version": sent, "fragments": feed.fragments(lang)}, separators=(",", ":"))
                    await response.write(f"id: {sent}\nevent: update\ndata: {payload}\n\n".encode())
                elif not await feed.wait_newer(sent, state.config.heartbeat_s):
                    await response.write(b": keep-alive\n\n")
    except ConnectionResetError:  # the browser went away
        log.debug("staff.events.closed", user_id=staffed.session.user.id)
    except StaffStoreError as e:  # headers are sent: end the stream, the browser reconnects
        log.error("staff.events.failed", error=str(e))
    return response


def _now_local(state: StaffState) -> str:
    tz = timezone(timedelta(minutes=state.config.utc_offset_minutes))
    return datetime.fromtimestamp(state.ctx.clock() / 1000, tz).strftime("%Y-%m-%dT%H:%M")


async def _acts_page(
    request: web.Request,
    staffed: Staffed,
    *,
    error: StaffInputError | None = None,
    form: dict[str, str] | None = None,
) -> web.Response:
    state = request.app[STAFF]
    trust = state.ctx.trust.current
    snapshot = trust.snapshot if trust else None
    acts, last = await state.db.run(lambda c: (list_acts(c, 500), last_acts(c)))
    lang = language_of(request, staffed.session, state.config)
    return state.views.page(
        "acts.html",
        status=400 if error else 200,
        session=staffed.session,
        acts=acts,
        checks=reconcile(last, snapshot),
        tablets=sorted(snapshot.tablets, key=lambda t: t.device_id) if snapshot else [],
        registry_version=snapshot.version if snapshot else None,
        accessories=ACCESSORIES,
        form=form or {},
        error=state.views.error_text(lang, error) if error else None,
        now_local=_now_local(state),
        lang=lang,
    )


@staff_handler()
async def get_acts(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    return await _acts_page(request, staffed)


@staff_handler(role="admin")
async def post_act(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    if staffed.form is None:  # a multipart body: the act form is a plain urlencoded form
        return state.views.message(
            N_("Form not understood"),
            N_("Send the act form as application/x-www-form-urlencoded (the page's own form does)."),
            status=400,
            session=staffed.session,
        )
    fields = {k: v for k, v in staffed.form.items() if k != "csrf"}
    now = state.ctx.clock()
    trust = state.ctx.trust.current
    try:
        form = parse_act_form(fields, now_ms=now, config=state.config)
        act_no = await state.db.run(
            lambda c: record_act(
                c,
                form,
                trust.snapshot if trust else None,
                user_id=staffed.session.user.id,
                now_ms=now,
                prefix=state.config.act_prefix,
                utc_offset_minutes=state.config.utc_offset_minutes,
            )
        )
    except StaffInputError as e:
        return await _acts_page(request, staffed, error=e, form=fields)
    log.info(
        "staff.act.recorded", act_no=act_no, kind=form.kind, device_id=form.device_id, user_id=staffed.session.user.id
    )
    state.feed.poke()
    return web.Response(status=303, headers={"Location": f"/staff/acts/{act_no}"})


@staff_handler()
async def get_act_page(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    act_no = request.match_info["act_no"]
    act = await state.db.run(lambda c: get_act(c, act_no))
    if act is None:
        return state.views.message(
            N_("No such act"), N_("There is no act %(act)s."), status=404, session=staffed.session, act=act_no
        )
    trust = state.ctx.trust.current
    snapshot = trust.snapshot if trust else None
    last = await state.db.run(last_acts)
    check = next((c for c in reconcile(last, snapshot) if c.device_id == act.device_id), None)
    return state.views.page(
        "act.html",
        session=staffed.session,
        act=act,
        paper=act_paper(act, state.config),
        check=check,
        registry_version=snapshot.version if snapshot else None,
    )


@staff_handler()
async def get_act_pdf(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    act_no = request.match_info["act_no"]
    act = await state.db.run(lambda c: get_act(c, act_no))
    if act is None:
        return state.views.message(
            N_("No such act"), N_("There is no act %(act)s."), status=404, session=staffed.session, act=act_no
        )
    try:
        pdf = await asyncio.to_thread(render_act_pdf, act, state.config)
    except PdfUnavailable as e:
        log.error("staff.act.pdf_unavailable", error=str(e))
        return state.views.message(
            N_("PDF unavailable"),
            N_("This host cannot write PDF files: %(reason)s"),
            status=503,
            session=staffed.session,
            reason=str(e),
        )
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="act-{act.act_no}.pdf"'},
    )
