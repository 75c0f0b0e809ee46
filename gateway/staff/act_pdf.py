"""An acceptance-transfer act as official paper: Kazakh and Russian on the same page (HTML and A4 PDF).

The act is the founding order's acceptance-transfer act (GLOSSARY.md):
every caption is printed in Kazakh and Russian side by side, whatever
language the staff member reads the dashboard in. The words come from the
``paper`` catalog (``l10n``). fpdf2 embeds DejaVu Sans, which has every
Kazakh letter (tests/gateway/test_l10n_paper.py); fpdf2 is imported when a
PDF is asked for, so a host without it (or without the font) still serves the HTML
act and says plainly why the PDF is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from l10n import N_, LocalFormat, catalogs

from .acts import ACCESSORIES, Act
from .config import StaffConfig
from .errors import PdfUnavailable

__all__ = ["PAPER_LANGUAGES", "ActPaper", "act_paper", "render_act_pdf"]

PAPER_LANGUAGES = ("kk", "ru")
_KINDS = {
    "issue": N_("Issue of a census tablet to a responsible worker"),
    "return": N_("Return of a census tablet by a responsible worker"),
}
_ACCESSORIES = {
    # TRANSLATORS: an accessory handed over with a tablet
    "charger": N_("charger"),
    # TRANSLATORS: an accessory handed over with a tablet (protective case)
    "case": N_("case"),
    # TRANSLATORS: GLOSSARY: USB cable = USB шнуры / USB-кабель
    "cable": N_("USB cable"),
}

# TRANSLATORS: a tablet's state in the key registry when the act was entered
_STATUSES = {"issued": N_("issued"), "returned": N_("returned"), "lost": N_("lost"), "revoked": N_("revoked")}


@dataclass(frozen=True, slots=True)
class ActPaper:
    """Everything printed on an act; each text is a (Kazakh, Russian) pair, values as they are."""

    act_no: str
    title: tuple[str, str]
    kind: tuple[str, str]
    fields: tuple[tuple[tuple[str, str], str], ...]
    statement: tuple[str, str]
    # (caption, role, name): "handed over by" then "accepted by"
    signatures: tuple[tuple[tuple[str, str], tuple[str, str], str], ...]
    signature: tuple[str, str]
    date: tuple[str, str]


def _both(message: str, **params: object) -> tuple[str, str]:
    paper = catalogs("paper")
    kk, ru = (paper.gettext(lang, message, **params) for lang in PAPER_LANGUAGES)
    return kk, ru


def _pair_text(pair: tuple[str, str]) -> str:
    return pair[0] if pair[0] == pair[1] else f"{pair[0]} / {pair[1]}"


def act_paper(act: Act, config: StaffConfig) -> ActPaper:
    """The act's text in Kazakh and Russian, shared by the HTML page and the PDF."""
    when = LocalFormat("ru", config.utc_offset_minutes)
    items = [_both(_ACCESSORIES[a]) for a in ACCESSORIES if a in act.accessories]
    accessories = " / ".join(", ".join(i[n] for i in items) for n in (0, 1)) if items else "—"
    if act.other_accessories:
        # TRANSLATORS: accessories handed over besides those listed
        other = _pair_text(_both("other"))
        accessories += f"; {other}: {act.other_accessories}"
    if act.registry_version is not None:
        status = act.registry_status or ""
        registry = f"v{act.registry_version}: {_pair_text(_both(_STATUSES[status])) if status in _STATUSES else status}"
    else:
        registry = _pair_text(_both("no registry snapshot"))
    zone = _pair_text(_both("Astana time, %(zone)s", zone=config.zone_text))
    fields = (
        (_both("Act number"), act.act_no),
        (_both("Date and time"), f"{when.datetime(act.acted_at_ms)} ({zone})"),
        (_both("Tablet (device id)"), act.device_id),
        # TRANSLATORS: the serial number the tablet's hardware reports over USB
        (_both("Hardware serial number"), act.usb_serial),
        (_both("Institution"), act.institution),
        (_both("Responsible worker"), f"{act.worker_name} ({act.worker_id})"),
        # TRANSLATORS: GLOSSARY: Department employee = Департамент қызметкері / сотрудник Департамента
        (_both("Department employee"), act.staff_name),
        (_both("Accessories"), accessories),
        (_both("Condition"), act.condition_note or "—"),
        # TRANSLATORS: the tablet's state in the key registry (issued, returned ...) when the act was entered
        (_both("Status in the registry when recorded"), registry),
        # TRANSLATORS: the dashboard account that entered the act, and when
        (_both("Recorded by"), f"{act.created_by}, {when.datetime(act.created_at_ms)}"),
    )
    staff = (_both("Department employee"), act.staff_name)
    worker = (_both("Responsible worker"), act.worker_name)
    handed, accepted = (staff, worker) if act.kind == "issue" else (worker, staff)
    return ActPaper(
        act_no=act.act_no,
        title=_both("Acceptance-transfer act No. %(act)s", act=act.act_no),
        kind=_both(_KINDS[act.kind]),
        fields=fields,
        statement=_both(
            "The tablet and the accessories listed above were handed over and accepted in the condition described."
        ),
        signatures=(
            (_both("Handed over by"), handed[0], handed[1]),
            (_both("Accepted by"), accepted[0], accepted[1]),
        ),
        signature=_both("Signature"),
        date=_both("Date"),
    )


def render_act_pdf(act: Act, config: StaffConfig) -> bytes:
    try:
        from fpdf import FPDF  # noqa: PLC0415 - optional dependency, loaded on use
        from fpdf.enums import XPos, YPos  # noqa: PLC0415
    except ImportError as e:
        raise PdfUnavailable("PDF output needs the fpdf2 package") from e
    font = Path(config.pdf_font)
    if not font.is_file():
        raise PdfUnavailable(f"PDF output needs a TTF font with Cyrillic at {font} (Debian: fonts-dejavu-core)")
    bold = font.with_name(font.stem + "-Bold" + font.suffix)
    paper = act_paper(act, config)
    pdf = FPDF(format="A4")
    pdf.set_title(" / ".join(paper.title))
    pdf.set_author("Sanaq Sync")
    pdf.set_lang("kk")
    pdf.set_margins(20, 18, 20)
    pdf.add_font("ActFont", "", str(font))
    pdf.add_font("ActFont", "B", str(bold if bold.is_file() else font))
    pdf.add_page()
    pdf.set_font("ActFont", "B", 14)
    for line in paper.title:
        pdf.cell(0, 8, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="C")
    pdf.set_font("ActFont", "", 11)
    for line in paper.kind:
        pdf.cell(0, 6, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="C")
    pdf.ln(5)
    pdf.set_font("ActFont", "", 10)
    with pdf.table(col_widths=(25, 25, 50), text_align=("LEFT", "LEFT", "LEFT"), first_row_as_headings=False) as table:
        for (kk, ru), value in paper.fields:
            row = table.row()
            row.cell(kk)
            row.cell(ru)
            row.cell(value)
    pdf.ln(8)
    for line in paper.statement:
        pdf.multi_cell(0, 5.5, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1)
    pdf.ln(8)
    for caption, role, name in paper.signatures:
        pdf.set_font("ActFont", "B", 10.5)
        pdf.cell(0, 6, _pair_text(caption), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("ActFont", "", 10.5)
        pdf.cell(0, 6, f"{_pair_text(role)}: {name}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.cell(
            0,
            10,
            f"{_pair_text(paper.signature)}: ______________________     {_pair_text(paper.date)}: ____________",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        pdf.ln(6)
    return bytes(pdf.output())
