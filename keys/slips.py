"""Printable access-code slips: A4 pages of eight slips, in Kazakh and Russian (one renderer for every minter).

fpdf2 with DejaVu Sans (the font the acceptance-transfer acts use) for
Cyrillic; the words are the ``paper`` catalog's (``l10n``), both languages on
the same slip. A slip carries the entry id, the respondent's name (so the
responsible worker hands it to the right person), the code in groups of four
and where to enter it. The bytes hold live codes: callers write them 0600 or
send them straight to the one person who minted them, never store them.
Both ``sanaq-selfenum codes`` and the staff dashboard print with this.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF

from l10n import N_, catalogs

from .access_codes import format_code

__all__ = ["Slip", "render_slips"]

_PAPER_LANGUAGES = ("kk", "ru")
_PER_PAGE = 8
_HEIGHT = 35.0
_MAX_HEAD = 110  # characters of "entry   names" that fit one line (a household's slip lists its members)


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


def render_slips(institution_code: str, slips: list[Slip], *, url: str, window: str, font: Path) -> bytes:
    """The PDF bytes; ``font`` must be a TTF with Cyrillic (a ``-Bold`` sibling is used when present)."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.add_font("Slip", "", str(font))
    bold = font.with_name(font.stem + "-Bold" + font.suffix)
    pdf.add_font("Slip", "B", str(bold if bold.is_file() else font))
    invitation = _invitation(url)
    for i, slip in enumerate(slips):
        if i % _PER_PAGE == 0:
            pdf.add_page()
            pdf.set_font("Slip", "B", 10)
            pdf.set_xy(10, 6)
            pdf.cell(0, 5, f"{institution_code} · {window}")
        top = 14 + (i % _PER_PAGE) * _HEIGHT
        pdf.set_draw_color(150, 150, 150)
        with pdf.local_context():
            pdf.set_dash_pattern(dash=2, gap=2)
            pdf.line(10, top, 200, top)
        pdf.set_xy(12, top + 2)
        pdf.set_font("Slip", "B", 11)
        head = f"{slip.entry_id}   {slip.name}"
        pdf.cell(0, 5, head if len(head) <= _MAX_HEAD else head[: _MAX_HEAD - 1] + "…")
        pdf.set_font("Slip", "", 8.5)
        pdf.set_xy(12, top + 8)
        for line in invitation:
            pdf.set_x(12)
            pdf.multi_cell(186, 4, line)
        pdf.set_font("Slip", "B", 16)
        pdf.set_xy(12, top + 23)
        pdf.cell(0, 8, format_code(slip.code))
    return bytes(pdf.output())
