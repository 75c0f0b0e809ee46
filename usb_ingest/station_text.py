"""What a technician reads at the station, in the station's language (``language`` in usb-ingest.toml).

The ``station`` catalog (``l10n``) holds the words of the status view
(``sanaq-usb-ingest status``), the device messages the daemon writes into
``status.json`` and the report of a one-off ``pull``. Operator-only output
(errors of ``check-config``, ``--help``) stays English. Log events stay
English too: they are for operators and journald.
"""

from __future__ import annotations

from l10n import DEFAULT_LANGUAGE, LocalFormat, catalogs

__all__ = ["StationText"]


class StationText:
    """``gettext``/``ngettext`` of one language with ``%(name)s`` placeholders filled from keywords."""

    def __init__(self, lang: str = DEFAULT_LANGUAGE, utc_offset_minutes: int = 300) -> None:
        self.lang = lang
        self._t = catalogs("station").get(lang)
        self.format = LocalFormat(lang, utc_offset_minutes)

    def gettext(self, message: str, /, **params: object) -> str:
        text = self._t.gettext(message)
        return text % params if params else text

    def ngettext(self, singular: str, plural: str, n: int, /, **params: object) -> str:
        return self._t.ngettext(singular, plural, n) % ({"n": n} | params)
