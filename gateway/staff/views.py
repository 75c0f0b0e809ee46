"""Server-side rendering of the staff pages (jinja2, autoescaped, translated) and their security headers.

Every page is rendered here; every value reaches HTML through jinja2's
escaping (no ``|safe`` on data). The live sections are macros of
``_sections.html`` so the first page load and each pushed update are the same
markup. Pages carry a strict Content-Security-Policy: scripts and styles only
from ``/staff/static``, no inline script, nothing from other origins.

Languages: one jinja2 environment per language with the i18n extension and
the ``staff`` catalog (``l10n``). A page's language is the user's choice
(``users.language``), else the ``staff_lang`` cookie set by the language
switch, else ``StaffConfig.language``. Filters turn data into local text:
``local`` (instant -> date and time, Astana time), ``num``, ``pct``, ``day``
(an ISO date), ``month_day`` (a chart label), ``age`` (minutes -> "3 h"), ``term`` (a data code such as a
registry status -> its label).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import FileSystemLoader, StrictUndefined

from l10n import LANGUAGE_NAMES, LANGUAGES, LocalFormat, catalogs, environments

from .accounts import StaffSession
from .config import StaffConfig
from .dashboard import DashboardModel
from .errors import StaffInputError
from .labels import TERMS

__all__ = [
    "LANG_COOKIE",
    "SECURITY_HEADERS",
    "STATIC_DIR",
    "STATIC_HEADERS",
    "Views",
    "language_of",
    "with_security_headers",
]

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
SECTIONS = ("summary", "alerts", "chart", "fleet", "coverage", "custody")
LANG_COOKIE = "staff_lang"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


# /staff/static/*: the same policy (a stylesheet or script read as HTML runs nothing), revalidated caching
STATIC_HEADERS = SECURITY_HEADERS | {"Cache-Control": "no-cache"}


def with_security_headers(response: web.StreamResponse) -> web.StreamResponse:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def language_of(request: web.Request | None, session: StaffSession | None, config: StaffConfig) -> str:
    """The page language: the user's stored choice, else the switch's cookie, else the configured default."""
    if session is not None and session.user.language in LANGUAGES:
        return str(session.user.language)
    chosen = request.cookies.get(LANG_COOKIE, "") if request is not None else ""
    return chosen if chosen in LANGUAGES else config.language


class Views:
    def __init__(self, config: StaffConfig) -> None:
        self._config = config
        self._catalogs = catalogs("staff")
        self._envs = environments(
            FileSystemLoader(TEMPLATE_DIR),
            self._catalogs,
            filters=self._filters,
            globals_={"config": config, "languages": LANGUAGE_NAMES},
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def _filters(self, lang: str) -> dict[str, Callable[..., Any]]:
        fmt = LocalFormat(lang, self._config.utc_offset_minutes)
        t = self._catalogs.get(lang)

        def local(at_ms: int | None, seconds: bool = False) -> str:
            return t.gettext("never") if at_ms is None else fmt.datetime(at_ms, seconds=seconds)

        def age(minutes: int | None) -> str:
            if minutes is None:
                return t.gettext("never")
            if minutes < 60:
                return t.ngettext("%(n)s min", "%(n)s min", minutes) % {"n": minutes}
            if minutes < 48 * 60:
                return t.ngettext("%(n)s h", "%(n)s h", minutes // 60) % {"n": minutes // 60}
            return t.ngettext("%(n)s day", "%(n)s days", minutes // 1440) % {"n": minutes // 1440}

        def term(code: str | None) -> str:
            return "" if code is None else t.gettext(TERMS[code]) if code in TERMS else code

        def said(text: str, params: Mapping[str, object] | None = None) -> str:
            """A message id from the Python side (alerts, checks) in this language, placeholders filled."""
            translated = t.gettext(text)
            return translated % _localised(params, term, local, age) if params else translated

        return {
            "local": local,
            "num": fmt.number,
            "pct": lambda x: fmt.number(x, digits=1),
            "day": fmt.iso_date,
            "month_day": fmt.month_day,
            "age": age,
            "term": term,
            "said": said,
        }

    def gettext(self, lang: str, message: str, /, **params: object) -> str:
        return self._catalogs.gettext(lang, message, **params)

    def error_text(self, lang: str, error: StaffInputError) -> str:
        """A refused input's message in ``lang``, led by the field it concerns."""
        text = self._catalogs.gettext(lang, error.msgid, **error.params)
        return f"{error.field}: {text}" if error.field else text

    def render(self, name: str, *, lang: str | None = None, **values: object) -> str:
        values.setdefault("session", None)
        session = values["session"]
        chosen = lang or language_of(None, session if isinstance(session, StaffSession) else None, self._config)
        return self._envs[chosen].get_template(name).render(**values)

    def page(
        self,
        name: str,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        lang: str | None = None,
        **values: object,
    ) -> web.Response:
        response = web.Response(
            text=self.render(name, lang=lang, **values),
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers=headers,
        )
        with_security_headers(response)
        return response

    def message(
        self,
        title: str,
        text: str,
        *,
        status: int,
        session: StaffSession | None = None,
        headers: dict[str, str] | None = None,
        lang: str | None = None,
        **params: object,
    ) -> web.Response:
        """A message page: ``title`` and ``text`` are message ids, ``text``'s placeholders come from ``params``."""
        chosen = lang or language_of(None, session, self._config)
        return self.page(
            "message.html",
            status=status,
            headers=headers,
            lang=chosen,
            title=self.gettext(chosen, title),
            text=self.gettext(chosen, text, **params),
            session=session,
        )

    def fragments(self, model: DashboardModel, lang: str) -> dict[str, str]:
        """The live sections' inner HTML in ``lang``, by element id."""
        module = self._envs[lang].get_template("_sections.html").module
        return {name: str(getattr(module, name)(model)) for name in SECTIONS}


def _localised(
    params: Mapping[str, object],
    term: Callable[[str | None], str],
    local: Callable[[int | None], str],
    age: Callable[[int | None], str],
) -> dict[str, object]:
    """Placeholder values in the reader's language, by naming convention of the placeholder.

    ``status``/``kind``: a data code, shown as its label; ``*_ms``: an instant,
    shown as local date and time; ``*_min``: a duration in minutes.
    """
    out: dict[str, object] = {}
    for key, value in params.items():
        if key in ("status", "kind") and isinstance(value, str):
            out[key] = term(value)
        elif key.endswith("_ms") and (value is None or isinstance(value, int)):
            out[key] = local(value)
        elif key.endswith("_min") and (value is None or isinstance(value, int)):
            out[key] = age(value)
        else:
            out[key] = value
    return out
