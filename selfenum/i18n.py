"""Kazakh (default), Russian and English: gettext catalogs read with Babel.

The ``.po`` files under ``selfenum/locale`` are the source; they are compiled
to ``.mo`` form in memory when the service starts (no compiled catalog is
committed or needed on disk). Message ids are English; ``en`` has no catalog
entries of its own and shows the msgids.
"""

from __future__ import annotations

import io
from importlib import resources

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "Catalogs"]

LANGUAGES = ("kk", "ru", "en")
DEFAULT_LANGUAGE = "kk"


class Catalogs:
    def __init__(self) -> None:
        self._by_lang: dict[str, NullTranslations] = {"en": NullTranslations()}
        base = resources.files("selfenum").joinpath("locale")
        for lang in ("kk", "ru"):
            po = base.joinpath(lang, "LC_MESSAGES", "selfenum.po").read_bytes()
            catalog = read_po(io.BytesIO(po), locale=lang)
            buf = io.BytesIO()
            write_mo(buf, catalog)
            buf.seek(0)
            self._by_lang[lang] = Translations(fp=buf)

    def get(self, lang: str) -> NullTranslations:
        return self._by_lang.get(lang, self._by_lang[DEFAULT_LANGUAGE])

    def missing(self, lang: str, msgids: list[str]) -> list[str]:
        """Msgids without a translation in ``lang`` (a test keeps this empty)."""
        t = self.get(lang)
        return [m for m in msgids if t.gettext(m) == m]
