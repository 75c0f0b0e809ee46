"""Dates, times and numbers the way each language writes them, in the census's local time (Astana).

Kazakh and Russian: ``04.10.2020 14:05`` and ``12 345`` (a no-break space
groups thousands), ``87,5`` with a decimal comma. English keeps the ISO-like
``2020-10-04 14:05`` and ``12,345``. The zone is a fixed offset from
configuration (Astana: UTC+05:00 since 2024, UTC+06:00 in 2020).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from babel.numbers import format_decimal

__all__ = ["LocalFormat"]

_DATETIME = {"kk": "%d.%m.%Y %H:%M", "ru": "%d.%m.%Y %H:%M", "en": "%Y-%m-%d %H:%M"}
_DATE = {"kk": "%d.%m.%Y", "ru": "%d.%m.%Y", "en": "%Y-%m-%d"}


@dataclass(frozen=True, slots=True)
class LocalFormat:
    lang: str
    utc_offset_minutes: int

    @property
    def zone(self) -> timezone:
        return timezone(timedelta(minutes=self.utc_offset_minutes))

    @property
    def zone_text(self) -> str:
        sign = "+" if self.utc_offset_minutes >= 0 else "-"
        hours, minutes = divmod(abs(self.utc_offset_minutes), 60)
        return f"UTC{sign}{hours:02d}:{minutes:02d}"

    def datetime(self, at_ms: int, *, seconds: bool = False) -> str:
        pattern = _DATETIME.get(self.lang, _DATETIME["en"]) + (":%S" if seconds else "")
        return datetime.fromtimestamp(at_ms / 1000, self.zone).strftime(pattern)

    def date(self, at_ms: int) -> str:
        return datetime.fromtimestamp(at_ms / 1000, self.zone).strftime(_DATE.get(self.lang, _DATE["en"]))

    def iso_date(self, text: str) -> str:
        """A ``YYYY-MM-DD`` date (lists, acts) in the language's order; anything else unchanged."""
        try:
            day = datetime.strptime(text, "%Y-%m-%d")
        except ValueError:
            return text
        return day.strftime(_DATE.get(self.lang, _DATE["en"]))

    def month_day(self, text: str) -> str:
        """A ``MM-DD`` day label (the dashboard's chart) in the language's order: ``DD.MM`` in kk and ru."""
        if self.lang in ("kk", "ru") and len(text) == 5 and text[2] == "-" and text.replace("-", "").isdigit():
            return f"{text[3:]}.{text[:2]}"
        return text

    def number(self, n: float, *, digits: int = 0) -> str:
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return str(format_decimal(n, pattern, locale=self.lang if self.lang in ("kk", "ru") else "en"))
