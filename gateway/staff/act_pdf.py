"""An acceptance-transfer act as a one-page A4 PDF for signature (fpdf2, DejaVu Sans for Cyrillic).

fpdf2 is imported when a PDF is asked for, so a host without it (or without
the font) still serves the HTML act and says plainly why the PDF is missing.
"""

from __future__ import annotations

from pathlib import Path

from .acts import ACCESSORIES, Act
from .config import StaffConfig
from .errors import PdfUnavailable

__all__ = ["ACT_TITLES", "act_fields", "render_act_pdf", "signatories"]

ACT_TITLES = {
    "issue": ("Issue of a census tablet to a responsible worker", "Передача планшета ответственному работнику"),
    "return": ("Return of a census tablet by a responsible worker", "Возврат планшета ответственным работником"),
}


def act_fields(act: Act, config: StaffConfig) -> list[tuple[str, str]]:
    """The act's lines as (label, value), shared by the HTML and PDF forms."""
    accessories = ", ".join(f"{a}: {'yes' if a in act.accessories else 'no'}" for a in ACCESSORIES)
    if act.other_accessories:
        accessories += f"; other: {act.other_accessories}"
    registry = f"v{act.registry_version}: {act.registry_status}" if act.registry_version is not None else "no snapshot"
    return [
        ("Act number", act.act_no),
        ("Date and time", f"{config.local_text(act.acted_at_ms)} ({config.zone_text})"),
        ("Tablet (device id)", act.device_id),
        ("Hardware serial", act.usb_serial),
        ("Institution", act.institution),
        ("Responsible worker", f"{act.worker_name} ({act.worker_id})"),
        ("Department representative", act.staff_name),
        ("Accessories", accessories),
        ("Condition", act.condition_note or "-"),
        ("Registry status when recorded", registry),
        ("Recorded by", f"{act.created_by}, {config.local_text(act.created_at_ms)}"),
    ]


def signatories(act: Act) -> tuple[tuple[str, str], tuple[str, str]]:
    """(handed over by, accepted by) as (role, name)."""
    staff = ("Department representative", act.staff_name)
    worker = ("Responsible worker", act.worker_name)
    return (staff, worker) if act.kind == "issue" else (worker, staff)


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
    pdf = FPDF(format="A4")
    pdf.set_title(f"Acceptance-transfer act {act.act_no}")
    pdf.set_author("Sanaq Sync")
    pdf.set_margins(20, 18, 20)
    pdf.add_font("ActFont", "", str(font))
    pdf.add_font("ActFont", "B", str(bold if bold.is_file() else font))
    pdf.add_page()
    english, russian = ACT_TITLES[act.kind]
    pdf.set_font("ActFont", "B", 15)
    pdf.cell(0, 9, f"Acceptance-transfer act No. {act.act_no}", new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="C")
    pdf.set_font("ActFont", "", 12)
    pdf.cell(0, 7, f"Акт приёма-передачи № {act.act_no}", new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="C")
    pdf.cell(0, 7, english, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="C")
    pdf.cell(0, 7, russian, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="C")
    pdf.ln(5)
    pdf.set_font("ActFont", "", 10.5)
    with pdf.table(col_widths=(32, 68), text_align=("LEFT", "LEFT"), first_row_as_headings=False) as table:
        for label, value in act_fields(act, config):
            row = table.row()
            row.cell(label)
            row.cell(value)
    pdf.ln(10)
    pdf.multi_cell(
        0,
        6,
        "The tablet and the accessories listed above were handed over and accepted in the condition described. "
        "Планшет и перечисленные принадлежности переданы и приняты в указанном состоянии.",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.ln(12)
    for caption, (role, name) in zip(
        ("Handed over by / Передал", "Accepted by / Принял"), signatories(act), strict=True
    ):
        pdf.set_font("ActFont", "B", 10.5)
        pdf.cell(0, 6, caption, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("ActFont", "", 10.5)
        pdf.cell(0, 6, f"{role}: {name}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.cell(
            0,
            10,
            "Signature / Подпись: ______________________     Date / Дата: ____________",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        pdf.ln(6)
    return bytes(pdf.output())
