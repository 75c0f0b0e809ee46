"""The admins' accounts page: who exists, which usernames are slowed or locked by failed logins, and unlocking."""

from __future__ import annotations

import structlog
from aiohttp import web

from l10n import N_

from .accounts import list_users, unlock_user
from .errors import StaffInputError
from .state import STAFF
from .throttle import throttled_users
from .views import language_of
from .web_auth import Staffed, staff_handler

__all__ = ["get_accounts", "post_unlock"]

log = structlog.get_logger("sanaq.gateway.staff")


async def _page(
    request: web.Request, staffed: Staffed, *, notice: str | None = None, status: int = 200
) -> web.Response:
    state = request.app[STAFF]
    now = state.ctx.clock()
    users, throttled = await state.db.run(lambda c: (list_users(c), throttled_users(c, state.config, now)))
    return state.views.page(
        "accounts.html", status=status, session=staffed.session, users=users, throttled=throttled, notice=notice
    )


@staff_handler(role="admin")
async def get_accounts(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    return await _page(request, staffed)


@staff_handler(role="admin")
async def post_unlock(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    """Clear the failed-login ceiling and delays of one username (audited as ``user.unlocked``)."""
    state = request.app[STAFF]
    username = staffed.form.get("username", "") if staffed.form is not None else ""
    now = state.ctx.clock()
    try:
        held = await state.db.run(
            lambda c: unlock_user(c, username=username, now_ms=now, by_user_id=staffed.session.user.id)
        )
    except StaffInputError as e:
        lang = language_of(request, staffed.session, state.config)
        notice = state.views.gettext(lang, N_("Not unlocked: %(reason)s"), reason=state.views.error_text(lang, e))
        return await _page(request, staffed, notice=notice, status=400)
    log.info("staff.user.unlocked", by_user_id=staffed.session.user.id, failures=held)
    lang = language_of(request, staffed.session, state.config)
    notice = state.views.gettext(
        lang,
        N_("Unlocked %(username)s: %(failures)s failed logins forgotten."),
        username=username.strip().lower(),
        failures=held,
    )
    return await _page(request, staffed, notice=notice)
