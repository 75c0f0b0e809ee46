"""Staff authentication at the HTTP edge: login, logout, and the guard on every staff handler.

``staff_handler(role=..., api=...)`` wraps a handler: without a live session a
page answers 303 to the login form and an API 401 (a tablet's or station's
RFC 9421 signature is not looked at, so it can never open a staff page); a
viewer asking for an admin handler gets 403; every POST must come from our own
origin and carry the session's CSRF token (``csrf`` form field, the first
part of a multipart form), else 403. The login form itself is protected by a
double-submit token (cookie + field) since there is no session yet.

Handlers here return responses; they never raise aiohttp HTTP errors, which the
gateway's problem middleware would turn into API problems. A body that
aiohttp's form or multipart parser cannot read (it raises ``ValueError``) is a
400 page (``unreadable_form``; views that stream multipart parts use it too).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import BodyPartReader, MultipartReader, web
from multidict import MultiDict, MultiDictProxy
from yarl import URL

from l10n import LANGUAGES, N_

from .accounts import StaffSession
from .errors import AuthRefused, LoginBusy, RateLimited, StaffStoreError
from .state import STAFF, StaffState
from .throttle import address_key
from .views import LANG_COOKIE, language_of, with_security_headers

__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "Staffed",
    "get_login",
    "post_language",
    "post_login",
    "post_logout",
    "staff_handler",
    "unreadable_form",
]

log = structlog.get_logger("sanaq.gateway.staff")

COOKIE = "sanaq_staff"
LOGIN_COOKIE = "sanaq_staff_login"
_MAX_FORM_FIELD = 4096
_MAX_TOKEN = 128


_THROTTLED = {
    False: N_("Too many failed logins. Try again later."),
    True: N_("Too many failed logins for this account. Try again later, or ask an administrator to unlock it."),
}
_WRONG = N_("Wrong username or password.")


@dataclass(frozen=True, slots=True)
class Staffed:
    """What a guarded handler gets: the session and, for POST, the checked form or multipart rest."""

    session: StaffSession
    form: MultiDictProxy[str] | None = None
    parts: MultipartReader | None = None


StaffView = Callable[[web.Request, Staffed], Awaitable[web.StreamResponse]]


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _same_origin(request: web.Request) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def _token_ok(expected: str | None, given: object) -> bool:
    """Both tokens present, non-empty, of sane length, and equal (constant time).

    An empty or missing token on either side is refused: ``compare_digest("", "")``
    is true, so emptiness must be checked first.
    """
    if not expected or not isinstance(given, str) or not given:
        return False
    if len(given) > _MAX_TOKEN or len(expected) > _MAX_TOKEN:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


async def _csrf_form(request: web.Request, session: StaffSession) -> tuple[bool, Staffed]:
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        part = await reader.next()
        ok = False
        if isinstance(part, BodyPartReader) and part.name == "csrf":
            value = (await part.read_chunk(_MAX_FORM_FIELD)).decode("utf-8", "replace")
            ok = _token_ok(session.csrf_token, value)
        return ok, Staffed(session, parts=reader)
    form = await request.post()
    text_form = MultiDictProxy(MultiDict([(k, v) for k, v in form.items() if isinstance(v, str)]))
    return _token_ok(session.csrf_token, form.get("csrf")), Staffed(session, form=text_form)


def unreadable_form(state: StaffState, session: StaffSession | None) -> web.Response:
    log.info("staff.form.unreadable")
    return state.views.message(
        N_("Form not understood"),
        N_("The form could not be read (malformed body). Reload the page and try again."),
        status=400,
        session=session,
    )


def staff_handler(
    *, role: str = "viewer", api: bool = False
) -> Callable[[StaffView], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    def wrap(view: StaffView) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            state: StaffState = request.app[STAFF]
            session = await state.accounts.session(request.cookies.get(COOKIE))
            if session is None:
                if api:
                    response: web.StreamResponse = web.json_response({"error": "login required"}, status=401)
                else:
                    response = _redirect("/staff/login")
                return with_security_headers(response)
            if role == "admin" and not session.user.is_admin:
                log.info("staff.forbidden", user_id=session.user.id, path=request.path)
                return state.views.message(
                    N_("Not allowed"), N_("This page is for administrators."), status=403, session=session
                )
            staffed = Staffed(session)
            if request.method == "POST":
                try:
                    ok, staffed = await _csrf_form(request, session) if _same_origin(request) else (False, staffed)
                except ValueError:  # aiohttp's form and multipart parsers: malformed body
                    return unreadable_form(state, session)
                if not ok:
                    log.warning("staff.csrf_refused", user_id=session.user.id, path=request.path)
                    return state.views.message(
                        N_("Form refused"),
                        N_("The form was stale or came from another site. Reload the page and try again."),
                        status=403,
                        session=session,
                    )
            try:
                response = await view(request, staffed)
            except StaffStoreError as e:
                log.error("staff.store_failed", error=str(e), path=request.path)
                return state.views.message(
                    N_("Temporarily unavailable"),
                    N_("The dashboard cannot read its data right now. Try again in a moment."),
                    status=503,
                    session=session,
                    headers={"Retry-After": "10"},
                )
            return response if response.prepared else with_security_headers(response)

        handler.__name__ = view.__name__
        handler.__doc__ = view.__doc__
        return handler

    return wrap


def _login_page(
    request: web.Request, state: StaffState, *, error: str | None, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    token = secrets.token_urlsafe(32)
    lang = language_of(request, None, state.config)
    text = state.views.gettext(lang, error) if error else None
    response = state.views.page("login.html", status=status, headers=headers, lang=lang, csrf=token, error=text)
    response.set_cookie(
        LOGIN_COOKIE, token, path="/staff/login", httponly=True, samesite="Strict", secure=request.secure, max_age=3600
    )
    return response


def _set_session_cookie(request: web.Request, response: web.Response, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE, token, path="/staff", httponly=True, samesite="Strict", secure=request.secure, max_age=max_age
    )


async def get_login(request: web.Request) -> web.StreamResponse:
    state = request.app[STAFF]
    if await state.accounts.session(request.cookies.get(COOKIE), touch=False) is not None:
        return with_security_headers(_redirect("/staff/"))
    return _login_page(request, state, error=None, status=200)


async def post_login(request: web.Request) -> web.StreamResponse:
    state = request.app[STAFF]
    try:
        form = await request.post()
    except ValueError:  # malformed urlencoded or multipart body
        return _login_page(
            request, state, error=N_("The login form could not be read. Please try again."), status=400
        )
    if not _same_origin(request) or not _token_ok(request.cookies.get(LOGIN_COOKIE, ""), form.get("csrf")):
        return _login_page(request, state, error=N_("The login form expired. Please try again."), status=403)
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or len(password) > 1024:
        return _login_page(request, state, error=_WRONG, status=401)
    address = address_key(request.remote)
    try:
        new = await state.accounts.login(username, password, address)
    except RateLimited as e:
        log.warning("staff.login.throttled", retry_after_s=e.retry_after_s, locked=e.locked)
        return _login_page(
            request,
            state,
            error=_THROTTLED[e.locked],
            status=429,
            headers={"Retry-After": str(e.retry_after_s)},
        )
    except LoginBusy as e:
        log.warning("staff.login.busy", retry_after_s=e.retry_after_s)
        return _login_page(
            request,
            state,
            error=N_("Too many logins at once. Try again in a moment."),
            status=503,
            headers={"Retry-After": str(e.retry_after_s)},
        )
    except AuthRefused:
        log.info("staff.login.refused")
        return _login_page(request, state, error=_WRONG, status=401)
    log.info("staff.login.ok", user_id=new.session.user.id, role=new.session.user.role)
    chosen = request.cookies.get(LANG_COOKIE, "")
    if chosen in LANGUAGES and new.session.user.language is None:  # chosen on the login page: keep it
        await state.accounts.set_language(new.session.user.id, chosen)
    response = _redirect("/staff/")
    _set_session_cookie(request, response, new.token, state.config.session_ttl_s)
    response.del_cookie(LOGIN_COOKIE, path="/staff/login")
    return with_security_headers(response)


@staff_handler()
async def post_logout(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    await state.accounts.logout(request.cookies.get(COOKIE, ""), staffed.session.user.id)
    log.info("staff.logout", user_id=staffed.session.user.id)
    response = _redirect("/staff/login")
    response.del_cookie(COOKIE, path="/staff")
    return response


def _back_to(request: web.Request, form_next: object) -> str:
    """Where the language switch returns: a same-site /staff/ page (GET-able), else the dashboard."""
    for candidate in (form_next, request.headers.get("Referer", "")):
        if not isinstance(candidate, str) or not candidate:
            continue
        url = URL(candidate)
        if url.is_absolute():
            if f"{url.scheme}://{url.raw_authority}" != f"{request.scheme}://{request.host}":
                continue
            url = url.relative()
        path = url.path
        if path.startswith("/staff/") and not path.startswith("//") and path not in _POST_ONLY:
            return str(url)[:2048]
    return "/staff/"


_POST_ONLY = frozenset({"/staff/logout", "/staff/language", "/staff/accounts/unlock"})


async def post_language(request: web.Request) -> web.StreamResponse:
    """The language switch: remembered for the user (``users.language``) and in the ``staff_lang`` cookie.

    Logged in, the form must carry the session's CSRF token; logged out (the
    login page) only the cookie is set and the request must be same-origin.
    An unknown language is a 400 page; nothing is changed.
    """
    state = request.app[STAFF]
    session = await state.accounts.session(request.cookies.get(COOKIE))
    try:
        form = await request.post()
    except ValueError:
        return unreadable_form(state, session)
    if not _same_origin(request) or (session is not None and not _token_ok(session.csrf_token, form.get("csrf"))):
        log.warning("staff.csrf_refused", user_id=session.user.id if session else None, path=request.path)
        return state.views.message(
            N_("Form refused"),
            N_("The form was stale or came from another site. Reload the page and try again."),
            status=403,
            session=session,
            lang=language_of(request, session, state.config),
        )
    lang = form.get("lang")
    if not isinstance(lang, str) or lang not in LANGUAGES:
        return state.views.message(
            N_("Language not available"),
            N_("Choose Kazakh, Russian or English."),
            status=400,
            session=session,
            lang=language_of(request, session, state.config),
        )
    if session is not None:
        await state.accounts.set_language(session.user.id, lang)
        log.info("staff.language.set", user_id=session.user.id, language=lang)
    response = web.Response(status=303, headers={"Location": _back_to(request, form.get("next"))})
    response.set_cookie(
        LANG_COOKIE, lang, path="/staff", httponly=True, samesite="Strict", secure=request.secure, max_age=31_536_000
    )
    return with_security_headers(response)
