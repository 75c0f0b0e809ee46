"""Printable access-code slips: one A4 PDF per institution, eight slips a page, Kazakh and Russian on each slip.

fpdf2 with DejaVu Sans (the font the acceptance-transfer acts use) for
Cyrillic and the Kazakh letters; the words are the ``paper`` catalog's
(``l10n``), both languages on the same slip. A slip carries the entry id, the respondent's name (so the
responsible worker hands it to the right person), the code in groups of four
and where to enter it. The PDF holds live codes: it is written 0600.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF

from keys.access_codes import format_code
from keys.files import atomic_write
from l10n import N_, catalogs

from .errors import OperatorError

__all__ = ["Slip", "write_slips"]

_PAPER_LANGUAGES = ("kk", "ru")


def _invitation(url: str) -> list[str]:
    paper = catalogs("paper")
    # TRANSLATORS: printed on the slip above the code. GLOSSARY: population census online = халық санағы онлайн
    # режимде / перепись населения онлайн; census sheet = санақ парағы / переписной лист
    message = N_("Population census online. Fill in the census sheet at %(url)s with this access code:")
    return [paper.gettext(lang, message, url=url) for lang in _PAPER_LANGUAGES]


@dataclass(frozen=True, slots=True)
class Slip:
    entry_id: str
    name: str
    code: str


def write_slips(path: Path, institution_code: str, slips: list[Slip], *, url: str, window: str, font: Path) -> None:
    if not font.is_file():
        raise OperatorError("slips need a TTF font with Cyrillic (Debian: fonts-dejavu-core)", path=str(font))
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.add_font("Slip", "", str(font))
    bold = font.with_name(font.stem + "-Bold" + font.suffix)
    pdf.add_font("Slip", "B", str(bold if bold.is_file() else font))
    per_page, height = 8, 35.0
    invitation = _invitation(url)
    for i, slip in enumerate(slips):
        if i % per_page == 0:
            pdf.add_page()
            pdf.set_font("Slip", "B", 10)
            pdf.set_xy(10, 6)
            pdf.cell(0, 5, f"{institution_code} · {window}")
        top = 14 + (i % per_page) * height
        pdf.set_draw_color(150, 150, 150)
        pdf.dashed_line(10, top, 200, top, 2, 2)
        pdf.set_xy(12, top + 2)
        pdf.set_font("Slip", "B", 11)
        pdf.cell(0, 5, f"{slip.entry_id}   {slip.name}")
        pdf.set_font("Slip", "", 8.5)
        pdf.set_xy(12, top + 8)
        for line in invitation:
            pdf.set_x(12)
            pdf.multi_cell(186, 4, line)
        pdf.set_font("Slip", "B", 16)
        pdf.set_xy(12, top + 23)
        pdf.cell(0, 8, format_code(slip.code))
    atomic_write(path, bytes(pdf.output()), mode=0o600)
