"""Jinja2 environments with the i18n extension: one per language, sharing loader and filters.

One environment per language (not one swapped per request) keeps rendering
free of shared mutable state: macros imported by templates see the same
``_``/``gettext``/``ngettext`` as the page. ``newstyle`` gettext fills
``%(name)s`` placeholders from keyword arguments and escapes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2

from .catalogs import LANGUAGES, Catalogs

__all__ = ["environments"]


def environments(
    loader: jinja2.BaseLoader,
    catalogs: Catalogs,
    *,
    autoescape: bool = True,
    filters: Callable[[str], dict[str, Callable[..., Any]]] | None = None,
    globals_: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, jinja2.Environment]:
    """``{lang: Environment}``, always autoescaped; ``filters(lang)``: each language's own (dates, numbers)."""
    out = {}
    for lang in LANGUAGES:
        env = jinja2.Environment(loader=loader, extensions=["jinja2.ext.i18n"], autoescape=True, **options)
        env.install_gettext_translations(catalogs.get(lang), newstyle=True)  # type: ignore[attr-defined]
        env.globals["lang"] = lang
        env.globals.update(globals_ or {})
        if filters is not None:
            env.filters.update(filters(lang))
        out[lang] = env
    return out
