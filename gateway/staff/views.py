"""Server-side rendering of the staff pages (jinja2, autoescaped) and their security headers.

Every page is rendered here; every value reaches HTML through jinja2's
escaping (no ``|safe`` on data). The live sections are macros of
``_sections.html`` so the first page load and each pushed update are the same
markup. Pages carry a strict Content-Security-Policy: scripts and styles only
from ``/staff/static``, no inline script, nothing from other origins.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .config import StaffConfig
from .dashboard import DashboardModel

__all__ = ["SECURITY_HEADERS", "STATIC_DIR", "STATIC_HEADERS", "Views", "with_security_headers"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
SECTIONS = ("summary", "alerts", "chart", "fleet", "coverage", "custody")

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


class Views:
    def __init__(self, config: StaffConfig) -> None:
        self._env = Environment(
            loader=FileSystemLoader(TEMPLATE_DIR),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.globals["config"] = config
        self._env.filters["local"] = config.local_text

    def render(self, name: str, **values: object) -> str:
        values.setdefault("session", None)
        return self._env.get_template(name).render(**values)

    def page(
        self, name: str, *, status: int = 200, headers: dict[str, str] | None = None, **values: object
    ) -> web.Response:
        response = web.Response(
            text=self.render(name, **values), status=status, content_type="text/html", charset="utf-8", headers=headers
        )
        with_security_headers(response)
        return response

    def message(
        self, title: str, text: str, *, status: int, session: object = None, headers: dict[str, str] | None = None
    ) -> web.Response:
        return self.page("message.html", status=status, headers=headers, title=title, text=text, session=session)

    def fragments(self, model: DashboardModel) -> dict[str, str]:
        """The live sections' inner HTML, by element id."""
        module = self._env.get_template("_sections.html").module
        return {name: str(getattr(module, name)(model)) for name in SECTIONS}
