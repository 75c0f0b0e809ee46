"""Kazakh (default), Russian and English for the respondents' site: the shared ``l10n`` catalogs reader.

The ``.po`` files under ``selfenum/locale`` (domain ``selfenum``) are the
source; ``l10n.Catalogs`` compiles them in memory when the service starts (no
compiled catalog is committed or needed on disk). Message ids are English;
``en`` has no catalog entries of its own and shows the msgids.
"""

from __future__ import annotations

from pathlib import Path

from l10n import DEFAULT_LANGUAGE, LANGUAGES
from l10n import Catalogs as _SharedCatalogs

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "Catalogs"]

LOCALE_DIR = Path(__file__).parent / "locale"


class Catalogs(_SharedCatalogs):
    def __init__(self) -> None:
        super().__init__("selfenum", LOCALE_DIR)
