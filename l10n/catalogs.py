"""Reading the catalogs: ``.po`` source compiled to ``.mo`` form in memory, one ``Translations`` per language.

Compiling at start (a few milliseconds per catalog) instead of shipping
``.mo`` files means a fresh clone, ``make setup`` and an installed package
all read the same source, and a stale compiled catalog cannot exist
(docs/adr/0005-translations.md).
"""

from __future__ import annotations

import _strptime  # type: ignore[import-not-found]  # noqa: F401 - see below
import functools
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

__all__ = ["DEFAULT_LANGUAGE", "DOMAINS", "LANGUAGES", "LANGUAGE_NAMES", "LOCALE_DIR", "Catalogs", "N_", "catalogs"]

LANGUAGES = ("kk", "ru", "en")
DEFAULT_LANGUAGE = "kk"
# Each language named in itself, for language switches.
LANGUAGE_NAMES = (("kk", "Қазақша"), ("ru", "Русский"), ("en", "English"))
DOMAINS = ("staff", "station", "paper")
LOCALE_DIR = Path(__file__).parent / "locale"
# ``import _strptime`` above: Babel reads a catalog header's dates with strptime, which imports that module
# lazily; imported with this one, a program that drops privileges before reading a catalog can still read it.


def N_(message: str) -> str:  # noqa: N802 - the gettext convention extraction looks for
    """Mark ``message`` for extraction; it is translated where it is shown."""
    return message


class Catalogs:
    """The translations of one domain in every language (``en``: the msgids themselves).

    Raises ``OSError`` when a catalog file is missing and Babel's errors on a
    malformed one: a broken install fails at start, not on a page.
    """

    def __init__(self, domain: str, locale_dir: Path = LOCALE_DIR) -> None:
        self.domain = domain
        self._by_lang: dict[str, NullTranslations] = {"en": NullTranslations()}
        for lang in LANGUAGES:
            if lang == "en":
                continue
            po = (locale_dir / lang / "LC_MESSAGES" / f"{domain}.po").read_bytes()
            catalog = read_po(io.BytesIO(po), locale=lang, domain=domain)
            buf = io.BytesIO()
            write_mo(buf, catalog)
            buf.seek(0)
            self._by_lang[lang] = Translations(fp=buf, domain=domain)

    def get(self, lang: str) -> NullTranslations:
        """The translations of ``lang``; an unknown language gets the default one."""
        return self._by_lang.get(lang, self._by_lang[DEFAULT_LANGUAGE])

    def gettext(self, lang: str, message: str, /, **params: object) -> str:
        """``message`` in ``lang``, its ``%(name)s`` placeholders filled from ``params``."""
        text = self.get(lang).gettext(message)
        return text % params if params else text

    def ngettext(self, lang: str, singular: str, plural: str, n: int, /, **params: object) -> str:
        """The plural form of ``lang`` for ``n``; ``%(n)s`` is ``n`` unless ``params`` says otherwise."""
        return self.get(lang).ngettext(singular, plural, n) % ({"n": n} | params)

    def missing(self, lang: str, msgids: list[str]) -> list[str]:
        """Msgids without a translation in ``lang`` (a test keeps this empty)."""
        t = self.get(lang)
        return [m for m in msgids if t.gettext(m) == m]


@functools.cache
def catalogs(domain: str) -> Catalogs:
    """The shared, read-only catalogs of one of ``DOMAINS`` (read once per process)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown translation domain {domain!r}")
    return Catalogs(domain)
