"""Kazakh, Russian and English for every surface a person reads: gettext catalogs (Babel), one per domain.

Domains: ``staff`` (the staff dashboard), ``station`` (what a technician
reads at a USB ingest station), ``paper`` (acceptance-transfer acts and
access-code slips, Kazakh and Russian on the same page). The respondents'
site keeps its catalogs in ``selfenum/locale`` and reads them with the same
``Catalogs``. The ``.po`` files are the source; they are compiled in memory
when a program starts, so no compiled catalog is committed or built.
Message ids are English; ``en`` shows the msgids.
"""

from __future__ import annotations

from .catalogs import DEFAULT_LANGUAGE, DOMAINS, LANGUAGE_NAMES, LANGUAGES, LOCALE_DIR, N_, Catalogs, catalogs
from .formats import LocalFormat
from .jinja import environments

__all__ = [
    "DEFAULT_LANGUAGE",
    "DOMAINS",
    "LANGUAGES",
    "LANGUAGE_NAMES",
    "LOCALE_DIR",
    "Catalogs",
    "LocalFormat",
    "N_",
    "catalogs",
    "environments",
]
