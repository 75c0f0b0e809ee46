# ruff: noqa: RUF001, RUF003  (the Cyrillic and Kazakh Latin letters of the table are the point)
"""The conservative person key that finds *possible* duplicates among institution sheets.

Key: institution code + normalised surname + normalised given name + birth
date. Names are normalised so that one person written in Kazakh Cyrillic,
Russian Cyrillic or Latin transliteration gets one key (docs/census-sheet.md
section 6 has the table): NFKC and case folding; every letter mapped to a
Latin skeleton (``_LETTERS``, then ``_LATIN_DIGRAPHS``); spaces, hyphens,
apostrophes and dots dropped; runs of one letter collapsed. The key is
stored as a SHA-256 digest, never as the names themselves. A match only opens
a review case; nothing is ever merged on it.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

__all__ = ["normalise_name", "person_key"]

# One letter -> its Latin skeleton. Cyrillic (Russian and Kazakh), then the Kazakh Latin letters
# whose plain-letter form after dropping marks would be wrong (ş is "sh", ı is "i").
_LETTERS: dict[str, str] = {
    "а": "a", "ә": "a", "б": "b", "в": "v", "г": "g", "ғ": "g", "д": "d", "е": "e", "ё": "e",
    "ж": "zh", "з": "z", "и": "i", "й": "i", "к": "k", "қ": "k", "л": "l", "м": "m", "н": "n",
    "ң": "n", "о": "o", "ө": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ұ": "u",
    "ү": "u", "ф": "f", "х": "h", "һ": "h", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "sh", "ъ": "",
    "ы": "y", "і": "i", "ь": "", "э": "e", "ю": "yu", "я": "ya",
    "ş": "sh", "ı": "i", "ç": "ch",
}  # fmt: skip
# Applied in order to the Latin text: transliteration variants of one sound.
_LATIN_DIGRAPHS: tuple[tuple[str, str], ...] = (
    ("kh", "h"),
    ("x", "h"),
    ("q", "k"),
    ("j", "zh"),
    ("w", "u"),
    ("y", "i"),
)
_DROPPED = frozenset(" -'.\u2019\u02bc")


def normalise_name(name: str) -> str:
    """The Latin skeleton of a name: ``Серікова``, ``Серикова`` and ``SERİKOVA`` all give ``serikova``."""
    text = unicodedata.normalize("NFKC", name).casefold()
    out: list[str] = []
    for ch in text:
        if ch in _DROPPED:
            continue
        mapped = _LETTERS.get(ch)
        if mapped is None:
            decomposed = unicodedata.normalize("NFKD", ch)
            mapped = "".join(c for c in decomposed if not unicodedata.combining(c))
        out.append(mapped)
    latin = "".join(out)
    for old, new in _LATIN_DIGRAPHS:
        latin = latin.replace(old, new)
    collapsed: list[str] = []
    for ch in latin:
        if not collapsed or collapsed[-1] != ch:
            collapsed.append(ch)
    return "".join(collapsed)


def person_key(sheet: Any) -> str | None:
    """Hex SHA-256 of the normalised key of an institution sheet's one person; None for other sheets."""
    if not isinstance(sheet, dict) or sheet.get("form") != "institution":
        return None
    persons = sheet.get("persons")
    code = sheet.get("institution_code")
    if not isinstance(persons, list) or not persons or not isinstance(code, str):
        return None
    person = persons[0]
    if not isinstance(person, dict):
        return None
    surname, given, birth = person.get("surname"), person.get("given_name"), person.get("birth_date")
    if not (isinstance(surname, str) and isinstance(given, str) and isinstance(birth, str)):
        return None
    text = "\x1f".join((code, normalise_name(surname), normalise_name(given), birth))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
