"""The respondent's pages: start (code), one page per question group, check answers, submit, confirmation.

A household's code (where the lists are household-based) opens ``/members``
first: every member on the list, and one census sheet per member filled one
after another under the same code (the session names the member chosen).

Every page answers in the respondent's language (cookie ``sq_lang``, Kazakh
by default). Errors are shown in an error summary linking to each field and
next to the field. Outside the online window every page says so and every
POST is refused. Logs name events and sequence numbers only: never a code,
a name, an answer, or an address.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from keys.access_codes import code_hash, derive_draft_key, normalise_code
from keys.errors import AccessCodeError, KeysError
from keys.files import atomic_write

from .contacts import BAD_CONTACT, ContactRefused, parse_contact, seal_contact
from .context import APP, SelfenumApp
from .i18n import DEFAULT_LANGUAGE, LANGUAGES
from .questionnaire import FIELDS, OPTION_LABELS, PAGES, FieldError, Page, Respondent
from .sessions import Session
from .store import CodeRow

__all__ = ["add_routes", "csrf_middleware"]

log = structlog.get_logger("selfenum.web")

SESSION_COOKIE = "sq_s"
CSRF_COOKIE = "sq_csrf"
LANG_COOKIE = "sq_lang"
_LANG_NAMES = (("kk", "Қазақша"), ("ru", "Русский"), ("en", "English"))
_ASTANA = timezone(timedelta(hours=5))
CODE_REFUSED = "The access code is not right, or it can no longer be used. Check it and try again"
TOO_MANY = "Too many wrong codes were entered from this connection. Try again later"
REMINDER_LINK = "Leave a phone number or e-mail address for a reminder (optional)"
ANOTHER_MEMBER = "Fill in the census sheet of another person in your household"


def _lang(request: web.Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, DEFAULT_LANGUAGE)
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


def _address(request: web.Request, se: SelfenumApp) -> str:
    if se.config.server.trusted_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()[:64]
    return request.remote or "unknown"


def _cookie(resp: web.StreamResponse, se: SelfenumApp, name: str, value: str, max_age: int | None = None) -> None:
    resp.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
                    secure=not se.config.server.insecure_cookies)


def _window(se: SelfenumApp) -> tuple[bool, str]:
    now = se.clock_ms()
    w = se.config.window
    return w.opens_ms() <= now < w.closes_ms(), ""


def _window_text(se: SelfenumApp, gettext: Callable[[str], str]) -> str:
    now = se.clock_ms()
    w = se.config.window
    fmt = "%d.%m.%Y %H:%M"
    opens = w.opens().astimezone(_ASTANA).strftime(fmt)
    closes = w.closes().astimezone(_ASTANA).strftime(fmt)
    if now < w.opens_ms():
        return gettext("Online self-enumeration has not started yet. It opens on %(opens)s (Astana time).") % {
            "opens": opens}
    return gettext("Online self-enumeration is closed since %(closes)s (Astana time). Nothing more can be sent "
                   "online; a responsible worker will interview you.") % {"closes": closes}


def _csrf_value(request: web.Request, se: SelfenumApp) -> tuple[str, str | None]:
    """(form token, new cookie value if one had to be made)."""
    cookie = request.cookies.get(CSRF_COOKIE)
    fresh = None
    if not cookie or len(cookie) > 64:
        cookie = fresh = se.sessions.new_csrf()
    return se.sessions.form_token(cookie), fresh


def _render(request: web.Request, se: SelfenumApp, template: str, *, title: str, status: int = 200,
            errors: list[FieldError] | None = None, **context: Any) -> web.Response:
    lang = _lang(request)
    translations = se.catalogs.get(lang)
    token, fresh = _csrf_value(request, se)
    # The language links come back here with a GET: a POST-only path goes back to the start.
    here = request.path_qs if request.method == "GET" else ("/" if request.path in ("/start", "/submit")
                                                            else request.path)
    html = se.templates.get_template(template).render(
        _=translations.gettext, lang=lang, languages=_LANG_NAMES, here=here, title=translations.gettext(
            title), errors=errors or [], csrf=token, **context)
    resp = web.Response(text=html, content_type="text/html", status=status)
    if fresh is not None:
        _cookie(resp, se, CSRF_COOKIE, fresh)
    return resp


def _message(request: web.Request, se: SelfenumApp, title: str, paragraphs: list[str], *, status: int = 200,
             reference: str | None = None) -> web.Response:
    gettext = se.catalogs.get(_lang(request)).gettext
    return _render(request, se, "message.html", title=title, status=status,
                   paragraphs=[gettext(p) for p in paragraphs], reference=reference)


@web.middleware
async def csrf_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    if request.method == "POST":
        se = request.app[APP]
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            return _message(request, se, "The form is too large", ["Go back and shorten your answers."], status=413)
        token = form.get("csrf")
        if not se.sessions.token_ok(request.cookies.get(CSRF_COOKIE), token if isinstance(token, str) else None):
            se.counters["csrf_refused"] += 1
            log.info("selfenum.csrf.refused", path=request.path)
            return _message(request, se, "This page has expired",
                            ["Go back to the start and enter your access code again."], status=403)
    return await handler(request)


def _session(request: web.Request, se: SelfenumApp) -> Session | None:
    return se.sessions.open(request.cookies.get(SESSION_COOKIE), now_ms=se.clock_ms())


def _active_code(se: SelfenumApp, s: Session) -> CodeRow | None:
    row = se.store.code(s.code_hash)
    return row if row is not None and row.status == "active" else None


def _respondent(se: SelfenumApp, s: Session) -> Respondent | None:
    """Whose sheet the session fills: the code's entry, or the household member chosen on /members."""
    row = _active_code(se, s)
    if row is None:
        return None
    entry = s.entry if row.members else row.entry_id
    if entry not in row.entries:
        return None
    return Respondent(entry, row.institution_code, row.institution_kind, row.worker_id)


def _draft_id(s: Session) -> str:
    """A household member's draft is kept apart from the other members' (same code, same draft key)."""
    return f"{s.code_hash}/{s.entry}" if s.entry else s.code_hash


def _load_answers(se: SelfenumApp, s: Session) -> dict[str, str]:
    sealed = se.store.draft(_draft_id(s), now_ms=se.clock_ms())
    if sealed is None:
        return {}
    try:
        body = json.loads(SecretBox(s.draft_key).decrypt(sealed))
    except (CryptoError, ValueError):
        return {}
    return {k: v for k, v in body.items() if k in FIELDS and isinstance(v, str)} if isinstance(body, dict) else {}


def _save_answers(se: SelfenumApp, s: Session, answers: Mapping[str, str]) -> None:
    sealed = bytes(SecretBox(s.draft_key).encrypt(json.dumps(dict(answers)).encode()))
    se.store.save_draft(_draft_id(s), sealed, now_ms=se.clock_ms(), expires_at_ms=se.config.window.closes_ms())


def _signed_in(handler: Callable[[web.Request, SelfenumApp, Session, Respondent], Awaitable[web.StreamResponse]]
               ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        se = request.app[APP]
        is_open, _ = _window(se)
        s = _session(request, se)
        who = _respondent(se, s) if s is not None else None
        if s is not None and who is None and (row := _active_code(se, s)) is not None and row.members:
            raise web.HTTPSeeOther("/members")  # a household's code: first choose whose sheet to fill
        if s is None or who is None:
            raise web.HTTPSeeOther("/")
        if se.store.submission(who.entry_id) is not None:
            raise web.HTTPSeeOther("/done")  # one sheet per code: every later step shows the first confirmation
        if not is_open:
            return _closed(request, se)
        return await handler(request, se, s, who)

    return wrapped


def _closed(request: web.Request, se: SelfenumApp) -> web.Response:
    gettext = se.catalogs.get(_lang(request)).gettext
    return _render(request, se, "message.html", title="Online self-enumeration is closed", status=403,
                   paragraphs=[_window_text(se, gettext)], reference=None)


def _confirmation(request: web.Request, se: SelfenumApp, sub: Any, *, household: bool = False) -> web.Response:
    gettext = se.catalogs.get(_lang(request)).gettext
    if sub.received_at_ms is not None:
        when = datetime.fromtimestamp(sub.received_at_ms / 1000, _ASTANA).strftime("%d.%m.%Y %H:%M:%S")
        paragraphs = [gettext("Your census sheet has been received by the census database on %(when)s (Astana "
                              "time).") % {"when": when},
                      gettext("Thank you for taking part in the population census.")]
    else:
        paragraphs = [gettext("Your census sheet has been accepted and will be delivered to the census database "
                              "shortly. You do not need to do anything else."),
                      gettext("Thank you for taking part in the population census.")]
    link = ("/members", gettext(ANOTHER_MEMBER)) if household else None
    from .web_certificates import certificate_available  # noqa: PLC0415 - it imports this module

    download = ("/done/certificate.pdf", gettext("Download your certificate of census participation (PDF)")) if (
        certificate_available(se, sub.entry_id, sub.received_at_ms)) else None
    return _render(request, se, "message.html", title="Census sheet sent", paragraphs=paragraphs,
                   reference=f"{sub.seq:08d}-{sub.batch_hash[:8].upper()}", link=link, download=download)


async def start(request: web.Request) -> web.StreamResponse:
    se = request.app[APP]
    is_open, _ = _window(se)
    gettext = se.catalogs.get(_lang(request)).gettext
    return _render(request, se, "start.html", title="Fill in your census sheet online", window_open=is_open,
                   window_text="" if is_open else _window_text(se, gettext), status=200 if is_open else 403)


async def post_start(request: web.Request) -> web.StreamResponse:
    se = request.app[APP]
    is_open, _ = _window(se)
    if not is_open:
        return _closed(request, se)
    form = await request.post()
    text = form.get("code")
    if not isinstance(text, str) or not text.strip():
        return _render(request, se, "start.html", title="Fill in your census sheet online", window_open=True,
                       window_text="", status=400, errors=[FieldError("code", "Enter your access code")])
    try:
        code = normalise_code(text)
    except AccessCodeError:
        # A typo caught by the check character is not a guess: it costs no attempt.
        return _render(request, se, "start.html", title="Fill in your census sheet online", window_open=True,
                       window_text="", status=400, errors=[FieldError("code", CODE_REFUSED)])
    ticket = se.throttle.reserve(_address(request, se))  # reserved before the lookup: race-free
    if ticket is None:
        se.counters["codes_refused"] += 1
        log.info("selfenum.code.throttled")
        return _render(request, se, "start.html", title="Fill in your census sheet online", window_open=True,
                       window_text="", status=429, errors=[FieldError("code", TOO_MANY)])
    h = code_hash(se.pepper, code)
    row = se.store.code(h)
    if row is None or row.status != "active" or not se.throttle.signin_allowed(h):
        se.counters["codes_refused"] += 1
        log.info("selfenum.code.refused")
        return _render(request, se, "start.html", title="Fill in your census sheet online", window_open=True,
                       window_text="", status=400, errors=[FieldError("code", CODE_REFUSED)])
    se.throttle.release(ticket)
    se.counters["signins"] += 1
    expires = min(se.clock_ms() + se.config.limits.session_idle_s * 1000, se.config.window.closes_ms())
    session = Session(h, derive_draft_key(code, se.draft_salt), se.sessions.new_csrf(), expires)
    log.info("selfenum.session.started")
    if row.members:
        target = "/members"
    else:
        done = se.store.submission(row.entry_id)
        target = "/done" if done is not None else "/q/" + _first_open_page(se, session)
    resp = web.HTTPSeeOther(target)
    _cookie(resp, se, SESSION_COOKIE, se.sessions.seal(session))
    raise resp


def _first_open_page(se: SelfenumApp, s: Session) -> str:
    answers = _load_answers(se, s)
    missing = se.questionnaire.missing_pages(answers, moment=se.config.window.moment())
    return missing[0] if missing else "check"


def _page_view(request: web.Request, se: SelfenumApp, page: Page, answers: Mapping[str, str], *,
               errors: list[FieldError], status: int = 200) -> web.Response:
    date_parts: dict[str, dict[str, str]] = {}
    for f in page.fields:
        if f.widget == "date":
            value = answers.get(f.name, "")
            y, _, rest = value.partition("-")
            m, _, d = rest.partition("-")
            date_parts[f.name] = {"year": y, "month": m.lstrip("0"), "day": d.lstrip("0")}
    number = next(i for i, p in enumerate(PAGES, start=1) if p.slug == page.slug)
    return _render(request, se, "page.html", title=page.title, status=status, errors=errors, page=page,
                   answers=answers, field_errors={e.field: e.message for e in errors}, number=number,
                   total=len(PAGES), options={f.name: se.questionnaire.options(f.name) for f in page.fields},
                   option_labels=OPTION_LABELS, date_parts=date_parts, max_chars=se.config.limits.max_field_chars)


@_signed_in
async def get_page(request: web.Request, se: SelfenumApp, s: Session, who: Respondent) -> web.StreamResponse:
    slug = request.match_info["slug"]
    if slug == "check":
        return _check(request, se, s)
    page = se.questionnaire.page(slug)
    if page is None:
        raise web.HTTPNotFound()
    return _page_view(request, se, page, _load_answers(se, s), errors=[])


@_signed_in
async def post_page(request: web.Request, se: SelfenumApp, s: Session, who: Respondent) -> web.StreamResponse:
    page = se.questionnaire.page(request.match_info["slug"])
    if page is None:
        raise web.HTTPNotFound()
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    cleaned, errors = se.questionnaire.clean(page, fields, moment=se.config.window.moment(),
                                             max_chars=se.config.limits.max_field_chars)
    answers = _load_answers(se, s)
    for f in page.fields:
        answers.pop(f.name, None)
    bad = {e.field for e in errors}
    answers.update({k: v for k, v in cleaned.items() if k not in bad})
    _save_answers(se, s, answers)
    log.info("selfenum.draft.saved", page=page.slug, errors=len(errors))
    if errors:
        return _page_view(request, se, page, {**answers, **cleaned}, errors=errors, status=400)
    if fields.get("action") == "save":
        gettext = se.catalogs.get(_lang(request)).gettext
        return _render(request, se, "message.html", title="Your answers have been saved",
                       paragraphs=[gettext("You can come back before the online census closes: enter the same "
                                           "access code to continue where you stopped.")],
                       reference=None, link=("/contact", gettext(REMINDER_LINK)))
    resp = web.HTTPSeeOther("/q/" + se.questionnaire.next_slug(page.slug))
    _keep_alive(resp, se, s)
    raise resp


def _keep_alive(resp: web.StreamResponse, se: SelfenumApp, s: Session) -> None:
    """Activity moves the idle limit (never past the close of the window)."""
    expires = min(se.clock_ms() + se.config.limits.session_idle_s * 1000, se.config.window.closes_ms())
    fresh = Session(s.code_hash, s.draft_key, s.csrf, expires, s.entry)
    _cookie(resp, se, SESSION_COOKIE, se.sessions.seal(fresh))


def _check(request: web.Request, se: SelfenumApp, s: Session) -> web.StreamResponse:
    answers = _load_answers(se, s)
    missing = se.questionnaire.missing_pages(answers, moment=se.config.window.moment())
    if missing:
        raise web.HTTPSeeOther("/q/" + missing[0])
    return _render(request, se, "check.html", title="Check your answers before sending your census sheet",
                   pages=PAGES, answers=answers, option_labels=OPTION_LABELS)


@_signed_in
async def post_submit(request: web.Request, se: SelfenumApp, s: Session, who: Respondent) -> web.StreamResponse:
    answers = _load_answers(se, s)
    moment = se.config.window.moment()
    if se.questionnaire.missing_pages(answers, moment=moment):
        raise web.HTTPSeeOther("/q/check")
    now = se.clock_ms()
    sheet = se.questionnaire.sheet(answers, who, moment=moment, now_ms=now)
    try:
        sub = se.store.submit(who.entry_id, s.code_hash, now_ms=now,
                              seal=lambda seq: se.sealer.seal(sheet, seq, now_ms=now),
                              write=lambda path, data: atomic_write(path, data, mode=0o600), draft_id=_draft_id(s))
    except (KeysError, OSError, sqlite3.Error) as e:  # disk full, I/O error: nothing was accepted
        log.error("selfenum.sheet.not_stored", error=type(e).__name__)
        return _message(request, se, "Your census sheet could not be accepted just now",
                        ["Nothing was lost: your answers are saved. Please try again in a few minutes."],
                        status=503)
    se.counters["submits"] += 1
    log.info("selfenum.sheet.accepted", seq=sub.seq)
    if sub.state == "queued" and se.deliverer is not None:
        await se.deliverer.deliver(sub)
        se.deliverer.wake.set()
    raise web.HTTPSeeOther("/done")


def _contact_page(request: web.Request, se: SelfenumApp, s: Session, *, value: str = "",
                  errors: list[FieldError] | None = None, status: int = 200) -> web.Response:
    return _render(request, se, "contact.html", title="Get a reminder (optional)", status=status,
                   errors=errors or [], value=value, held=se.store.has_contact(s.code_hash),
                   back="/q/" + _first_open_page(se, s))


@_signed_in
async def get_contact(request: web.Request, se: SelfenumApp, s: Session, who: Respondent) -> web.StreamResponse:
    return _contact_page(request, se, s)


@_signed_in
async def post_contact(request: web.Request, se: SelfenumApp, s: Session, who: Respondent) -> web.StreamResponse:
    """Keep, replace or (action=remove) delete the respondent's reminder contact; never logged."""
    form = await request.post()
    gettext = se.catalogs.get(_lang(request)).gettext
    back = ("/q/" + _first_open_page(se, s), gettext("Continue filling in your census sheet"))
    if form.get("action") == "remove":
        se.store.delete_contact(s.code_hash)
        log.info("selfenum.contact.removed")
        return _render(request, se, "message.html", title="Your contact has been deleted", paragraphs=[],
                       reference=None, link=back)
    text = form.get("contact")
    try:
        contact = parse_contact(text if isinstance(text, str) else "")
    except ContactRefused:
        value = text[:100] if isinstance(text, str) else ""
        return _contact_page(request, se, s, value=value, errors=[FieldError("contact", BAD_CONTACT)], status=400)
    row = _active_code(se, s)
    entry = row.entry_id if row is not None else who.entry_id  # a household's contact is the household's
    se.store.save_contact(s.code_hash, entry, seal_contact(se.contacts_key, contact, _lang(request)),
                          now_ms=se.clock_ms(), expires_at_ms=se.config.window.closes_ms())
    log.info("selfenum.contact.saved")
    return _render(request, se, "message.html", title="We will remind you", reference=None, link=back,
                   paragraphs=[gettext("If you have not sent your census sheet, the census authority will remind "
                                       "you before the online census closes. Your contact is deleted when you send "
                                       "your sheet or when the online census closes.")])


async def get_done(request: web.Request) -> web.StreamResponse:
    se = request.app[APP]
    s = _session(request, se)
    row = se.store.code(s.code_hash) if s is not None else None
    entry = (s.entry if row.members else row.entry_id) if row is not None and s is not None else ""
    sub = se.store.submission(entry) if entry else None
    if sub is None:
        raise web.HTTPSeeOther("/members" if row is not None and row.members else "/")
    return _confirmation(request, se, sub, household=bool(row is not None and row.members))


async def get_members(request: web.Request) -> web.StreamResponse:
    """A household's code: every member on the list, sent or not, and a button to fill each one's sheet."""
    se = request.app[APP]
    s = _session(request, se)
    row = _active_code(se, s) if s is not None else None
    if row is None or not row.members:
        raise web.HTTPSeeOther("/")
    members = [(i, entry, se.store.submission(entry) is not None) for i, entry in enumerate(row.entries, start=1)]
    return _render(request, se, "members.html", title="Your household", members=members,
                   all_sent=all(sent for _, _, sent in members), window_open=_window(se)[0])


async def post_members(request: web.Request) -> web.StreamResponse:
    se = request.app[APP]
    if not _window(se)[0]:
        return _closed(request, se)
    s = _session(request, se)
    row = _active_code(se, s) if s is not None else None
    if s is None or row is None or not row.members:
        raise web.HTTPSeeOther("/")
    form = await request.post()
    entry = form.get("entry")
    if not isinstance(entry, str) or entry not in row.members or se.store.submission(entry) is not None:
        raise web.HTTPSeeOther("/members")
    chosen = Session(s.code_hash, s.draft_key, s.csrf, s.expires_at_ms, entry)
    log.info("selfenum.member.chosen")
    resp = web.HTTPSeeOther("/q/" + _first_open_page(se, chosen))
    _keep_alive(resp, se, chosen)
    raise resp


async def set_language(request: web.Request) -> web.StreamResponse:
    se = request.app[APP]
    lang = request.match_info["lang"]
    nxt = request.query.get("next", "/")
    if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        nxt = "/"
    resp = web.HTTPSeeOther(quote(nxt, safe="/?=&-_.~%"))
    if lang in LANGUAGES:
        _cookie(resp, se, LANG_COOKIE, lang, max_age=90 * 86400)
    raise resp


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    se = request.app[APP]
    ok = se.deliverer is not None
    version = se.trust.version if se.trust is not None else 0
    return web.json_response({"ready": ok, "window_open": _window(se)[0], "registry_version": version},
                             status=200 if ok else 503)


def _operator_only(request: web.Request) -> None:
    """Metrics are for the host's Prometheus, never for the public: loopback and not through the proxy."""
    if "X-Forwarded-For" in request.headers or request.remote not in ("127.0.0.1", "::1"):
        raise web.HTTPNotFound()


async def metrics(request: web.Request) -> web.Response:
    _operator_only(request)
    se = request.app[APP]
    counts = se.store.counts()
    lines = []
    for name, value in counts.items():
        lines.append(f"# TYPE sanaq_selfenum_{name} gauge\nsanaq_selfenum_{name} {value}")
    for name, value in se.counters.items():
        lines.append(f"# TYPE sanaq_selfenum_{name}_total counter\nsanaq_selfenum_{name}_total {value}")
    lines.append(f"# TYPE sanaq_selfenum_throttled_total counter\nsanaq_selfenum_throttled_total "
                 f"{se.throttle.refused}")
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", start)
    app.router.add_post("/start", post_start)
    app.router.add_get("/q/{slug}", get_page)
    app.router.add_post("/q/{slug}", post_page)
    app.router.add_post("/submit", post_submit)
    app.router.add_get("/contact", get_contact)
    app.router.add_post("/contact", post_contact)
    app.router.add_get("/done", get_done)
    app.router.add_get("/members", get_members)
    app.router.add_post("/members", post_members)
    app.router.add_get("/language/{lang}", set_language)
    app.router.add_get("/healthz", health)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/metrics", metrics)
