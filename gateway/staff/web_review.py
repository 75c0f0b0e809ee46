"""The review queue pages: the cases the census store opened, and the staff's decisions.

Everyone signed in sees the queue (provenance only: roads, device or web ids,
times). A case's page shows both sheets' person (names, birth date) and the
decision form, so it is for administrators and each view is audited; each
decision is recorded with the staff member and time (``review.decide``).
"""

from __future__ import annotations

import json

import structlog
from aiohttp import web

from l10n import N_

from .errors import StaffInputError
from .review import DECISIONS, decide, decide_match
from .state import STAFF
from .views import language_of
from .web_auth import Staffed, staff_handler

__all__ = ["get_review", "get_review_case", "post_list_match", "post_review_case"]

log = structlog.get_logger("sanaq.gateway.staff")


def _case_id(request: web.Request) -> int:
    return int(request.match_info["case_id"])


@staff_handler()
async def get_review(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    return await _queue(request, staffed)


async def _queue(
    request: web.Request, staffed: Staffed, *, notice: str | None = None, status: int = 200
) -> web.StreamResponse:
    state = request.app[STAFF]
    await state.feed.current()
    cases, decisions = state.feed.cases, state.feed.decisions
    open_cases = [c for c in cases if c.id not in decisions]
    decided = [(c, decisions[c.id]) for c in cases if c.id in decisions]
    taken = state.feed.match_decisions
    matches = [m for m in state.feed.list_matches if (m.counted.batch_id, m.counted.index) not in taken]
    return state.views.page(
        "review.html",
        status=status,
        session=staffed.session,
        open_cases=open_cases,
        decided=decided[-200:],
        matches=matches,
        matches_decided=sorted(taken.values(), key=lambda d: d.decided_at_ms)[-200:],
        local=state.config.local_text,
        notice=notice,
    )


def _person(body_json: str | None) -> dict[str, str]:
    body = json.loads(body_json or "{}")
    persons = body.get("persons") if isinstance(body, dict) else None
    person = persons[0] if isinstance(persons, list) and persons and isinstance(persons[0], dict) else {}
    return {k: v for k, v in person.items() if isinstance(v, str)}


async def _case_page(
    request: web.Request, staffed: Staffed, *, notice: str | None = None, status: int = 200
) -> web.StreamResponse:
    state = request.app[STAFF]
    case = await state.queries.review_case(_case_id(request))
    if case is None:
        return state.views.message(
            N_("No such case"), N_("There is no review case with this number."), status=404, session=staffed.session
        )
    await state.feed.current()
    await state.accounts.audit(staffed.session.user.id, "review.viewed", case=case.id)
    return state.views.page(
        "review_case.html",
        status=status,
        session=staffed.session,
        case=case,
        decision=state.feed.decisions.get(case.id),
        first=_person(case.first.body_json),
        second=_person(case.second.body_json),
        decisions=DECISIONS,
        notice=notice,
        local=state.config.local_text,
    )


@staff_handler(role="admin")
async def get_review_case(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    return await _case_page(request, staffed)


@staff_handler(role="admin")
async def post_review_case(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    case = await state.queries.review_case(_case_id(request))
    if case is None:
        return state.views.message(
            N_("No such case"), N_("There is no review case with this number."), status=404, session=staffed.session
        )
    choice = staffed.form.get("decision", "") if staffed.form is not None else ""
    now, user_id = state.ctx.clock(), staffed.session.user.id
    try:
        made = await state.db.run(lambda c: decide(c, case, choice, user_id=user_id, now_ms=now))
    except StaffInputError as e:
        return await _case_page(request, staffed, notice=_not_decided(request, staffed, e), status=400)
    log.info("staff.review.decided", case=case.id, kind=case.kind, decision=made.decision, user_id=user_id)
    state.feed.poke(lists_changed=made.new_entry_id is not None)
    extra = f" The list gained entry {made.new_entry_id}." if made.new_entry_id else ""
    return await _case_page(request, staffed, notice=f"Case {case.id} decided: {made.decision}.{extra}")


@staff_handler(role="admin")
async def post_list_match(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    """Decide an off-list sheet that matches a listed person: the same person, or a different one."""
    state = request.app[STAFF]
    form = staffed.form
    try:
        sheet = (int(form.get("batch_id", "")), int(form.get("index", ""))) if form is not None else (0, -1)
    except ValueError:
        return await _queue(request, staffed, notice="Not decided: no such sheet.", status=400)
    await state.feed.current()
    match = next((m for m in state.feed.list_matches if (m.counted.batch_id, m.counted.index) == sheet), None)
    if match is None:
        return await _queue(request, staffed, notice="Not decided: no such sheet.", status=404)
    body = await state.queries.sheet_body(*sheet)
    now, user_id = state.ctx.clock(), staffed.session.user.id
    choice = form.get("decision", "") if form is not None else ""
    try:
        made = await state.db.run(
            lambda c: decide_match(c, match, choice, body_json=body or "{}", user_id=user_id, now_ms=now)
        )
    except StaffInputError as e:
        return await _queue(request, staffed, notice=_not_decided(request, staffed, e), status=400)
    log.info("staff.review.list_match_decided", decision=made.decision, user_id=user_id)
    state.feed.poke(lists_changed=made.decision == "different")
    text = (f"{match.entry_id} is {match.listed_entry_id}: counted once." if made.decision == "same-person"
            else f"{match.entry_id} is another person: the list gained it.")
    return await _queue(request, staffed, notice=text)


def _not_decided(request: web.Request, staffed: Staffed, error: StaffInputError) -> str:
    """The refusal of a review decision in the reader's language."""
    state = request.app[STAFF]
    lang = language_of(request, staffed.session, state.config)
    # TRANSLATORS: a review decision was refused; reason is the refusal, already translated
    refused = N_("Not decided: %(reason)s")
    return state.views.gettext(lang, refused, reason=state.views.error_text(lang, error))
