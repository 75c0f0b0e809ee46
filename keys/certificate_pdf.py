# ruff: noqa: RUF001, RUF002  (Kazakh and Russian certificate text is the point)
"""Participation certificates as PDF: one A4 page each, Kazakh and Russian, a QR code with the carrier.

fpdf2 with DejaVu Sans (the font of the acceptance-transfer acts and the
access-code slips) for Cyrillic and the Kazakh letters; segno makes the QR
matrix, drawn as vector squares (no raster image, sharp at any print size).
The QR holds the carrier's text form (``wire.certificate.carrier_to_text``),
error correction M. A page shows exactly what the certificate shows (census,
subject, day, road, issuer), nothing else about the respondent.

Every sentence is fixed Kazakh and Russian text of the founding order's words
(``GLOSSARY.md``: "халық санағынан өту туралы анықтама" / "справка о
прохождении переписи населения"); no English is printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import segno
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from wire.certificate import Certificate, carrier_to_text

from .errors import KeyFileMissingError

__all__ = ["DEJAVU_SANS", "ROAD_TEXT", "PrintedCertificate", "render_certificates_pdf"]

DEJAVU_SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

TITLE_KK = "Халық санағынан өту туралы анықтама"
TITLE_RU = "Справка о прохождении переписи населения"
ROAD_TEXT = {
    "tablet": ("планшетте сауал салу арқылы", "опрос на планшете"),
    "usb": ("планшетте сауал салу арқылы, электронды жеткізгіш арқылы жеткізілді",
            "опрос на планшете, доставлено на электронном носителе"),
    "web": ("онлайн режимде, Интернет желісі арқылы", "в онлайн-режиме, через Интернет"),
}
_SUBJECT_TEXT = {
    "entry": ("Респонденттің тізімдегі жазбасы", "Запись в списке респондентов"),
    "sheet": ("Санақ парағының нөмірі", "Номер переписного листа"),
}
_CONFIRM_KK = "Осы анықтама респонденттің халық санағынан өткенін растайды."
_CONFIRM_RU = "Настоящая справка подтверждает, что респондент прошёл перепись населения."
_CHECK_KK = ("Анықтаманың түпнұсқалығын QR-код бойынша тексеруге болады: {where}. Анықтамада "
             "респонденттің жеке деректері жоқ.")
_CHECK_RU = ("Подлинность справки можно проверить по QR-коду: {where}. Справка не содержит "
             "личных данных респондента.")
_QR_MM = 70.0


@dataclass(frozen=True, slots=True)
class PrintedCertificate:
    """A verified certificate and the issuing authority's name as printed (not signed)."""

    certificate: Certificate
    issuer_name: str


def _rows(c: PrintedCertificate) -> list[tuple[str, str, str]]:
    cert = c.certificate
    subject_kk, subject_ru = _SUBJECT_TEXT[cert.subject_kind]
    road_kk, road_ru = ROAD_TEXT[cert.road]
    return [
        ("Санақ", "Перепись", cert.census),
        (subject_kk, subject_ru, cert.subject_id),
        ("Санақтан өткен күні", "Дата прохождения переписи", cert.day),
        ("Санақтан өту әдісі", "Способ", f"{road_kk} / {road_ru}"),
        ("Анықтаманы берген", "Выдал", f"{c.issuer_name} ({cert.key.issuer})"),
    ]


def _qr(pdf: FPDF, text: str, x: float, y: float, size: float) -> None:
    qr = segno.make(text, error="m", micro=False)
    matrix = qr.matrix
    border = 4
    module = size / (len(matrix) + 2 * border)
    pdf.set_fill_color(0, 0, 0)
    for row, line in enumerate(matrix):
        col = 0
        while col < len(line):  # one rectangle per run of dark modules: small files, exact edges
            if line[col] & 1:
                start = col
                while col < len(line) and line[col] & 1:
                    col += 1
                pdf.rect(x + (border + start) * module, y + (border + row) * module, (col - start) * module,
                         module, style="F")
            else:
                col += 1


def render_certificates_pdf(items: list[PrintedCertificate], *, font: Path = DEJAVU_SANS,
                            verify_where: str = "sanaq-keys verify-certificate") -> bytes:
    """One page per certificate, in the order given; ``verify_where`` names the public verification page."""
    if not font.is_file():
        raise KeyFileMissingError("certificates need a TTF font with Kazakh letters (Debian: fonts-dejavu-core)",
                                  path=str(font))
    bold = font.with_name(font.stem + "-Bold" + font.suffix)
    pdf = FPDF(format="A4")
    pdf.set_title(f"{TITLE_KK} / {TITLE_RU}")
    pdf.set_author("Sanaq Sync")
    pdf.set_auto_page_break(False)
    pdf.set_margins(20, 18, 20)
    pdf.add_font("Cert", "", str(font))
    pdf.add_font("Cert", "B", str(bold if bold.is_file() else font))
    for item in items:
        pdf.add_page()
        pdf.set_font("Cert", "B", 16)
        pdf.multi_cell(0, 8, TITLE_KK, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("Cert", "B", 13)
        pdf.multi_cell(0, 7, TITLE_RU, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(6)
        pdf.set_font("Cert", "", 10.5)
        with pdf.table(col_widths=(34, 34, 62), text_align=("LEFT", "LEFT", "LEFT"),
                       first_row_as_headings=False) as table:
            for kk, ru, value in _rows(item):
                row = table.row()
                row.cell(kk)
                row.cell(ru)
                row.cell(value)
        pdf.ln(6)
        pdf.set_font("Cert", "", 10.5)
        pdf.multi_cell(0, 5.5, _CONFIRM_KK, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.multi_cell(0, 5.5, _CONFIRM_RU, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(4)
        top = pdf.get_y()
        _qr(pdf, carrier_to_text(item.certificate.raw), (pdf.w - _QR_MM) / 2, top, _QR_MM)
        pdf.set_y(top + _QR_MM + 3)
        pdf.set_font("Cert", "", 9)
        pdf.multi_cell(0, 4.5, _CHECK_KK.format(where=verify_where), align="C", new_x=XPos.LMARGIN,
                       new_y=YPos.NEXT)
        pdf.multi_cell(0, 4.5, _CHECK_RU.format(where=verify_where), align="C", new_x=XPos.LMARGIN,
                       new_y=YPos.NEXT)
        pdf.set_font("Cert", "", 7.5)
        pdf.multi_cell(0, 4, f"Кілт / Ключ {item.certificate.key.key_id.hex()}", align="C", new_x=XPos.LMARGIN,
                       new_y=YPos.NEXT)
    return bytes(pdf.output())
