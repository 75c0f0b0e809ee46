"""Printable access-code slips written by ``sanaq-selfenum codes``: one A4 PDF per institution, 0600.

The renderer is ``keys.slips`` (the staff dashboard prints with it too).
"""

from __future__ import annotations

from pathlib import Path

from keys.files import atomic_write
from keys.slips import Slip, render_slips

from .errors import OperatorError

__all__ = ["Slip", "write_slips"]


def write_slips(path: Path, institution_code: str, slips: list[Slip], *, url: str, window: str, font: Path) -> None:
    if not font.is_file():
        raise OperatorError("slips need a TTF font with Cyrillic (Debian: fonts-dejavu-core)", path=str(font))
    atomic_write(path, render_slips(institution_code, slips, url=url, window=window, font=font), mode=0o600)
