"""Failures of the staff dashboard, grouped by who is at fault.

::

    StaffError                      base of everything below
    +-- StaffConfigError            the operator's setup cannot work (also a runtime ConfigError,
    |                               so ``sanaq-gateway`` prints it and exits 2 instead of crashing)
    +-- StaffStoreError             staff data (staff.db or the PostgreSQL staff tables) cannot be
    |                               opened, migrated, read or written
    +-- StaffInputError             a staff member sent something invalid; ``.field`` names the input
    |   +-- ActRefused              an acceptance-transfer act contradicts the act history or registry
    |   +-- ListFileRejected        a respondent-list CSV cannot be read at all (encoding, header, size)
    +-- AuthRefused                 bad username or password (one message for both, on purpose)
    +-- RateLimited                 too many failed logins; ``.retry_after_s``, ``.locked`` (the ceiling)
    +-- LoginBusy                   too many logins waiting for a password check; ``.retry_after_s``
    +-- PdfUnavailable              the PDF writer or its Cyrillic font is missing on this host

Third-party errors (sqlite3, psycopg, argon2, fpdf) are wrapped at the boundary with
``raise ... from e``; messages never carry passwords, tokens or respondents' names.
"""

from __future__ import annotations

from runtime.toml_config import ConfigError

__all__ = [
    "ActRefused",
    "AuthRefused",
    "ListFileRejected",
    "LoginBusy",
    "PdfUnavailable",
    "RateLimited",
    "StaffConfigError",
    "StaffError",
    "StaffInputError",
    "StaffStoreError",
]


class StaffError(Exception):
    """Base of staff dashboard failures."""


class StaffConfigError(StaffError, ConfigError):
    """The staff dashboard cannot run with this configuration (e.g. PostgreSQL without a shared pepper file)."""


class StaffStoreError(StaffError):
    """Staff data failed (staff.db or the PostgreSQL staff tables: cannot open, read or write)."""


class StaffInputError(StaffError):
    """Invalid input from a staff member; ``field`` names the form field or CSV column.

    ``message`` is an English message id with ``%(name)s`` placeholders filled
    from ``params``: ``str(e)`` is the English text, ``e.msgid``/``e.params``
    let a page show it in the reader's language (``Views.error_text``).
    """

    def __init__(self, message: str, *, field: str | None = None, **params: object) -> None:
        super().__init__(message % params if params else message)
        self.field = field
        self.msgid = message
        self.params = params


class ActRefused(StaffInputError):
    """The act cannot be recorded: it contradicts the act history or the registry."""


class ListFileRejected(StaffInputError):
    """The respondent-list file is unusable as a whole (not UTF-8, bad header, too large).

    The message is for the admin who sent the file and may quote it (an unknown
    column can be a data row when the header is missing); ``reason`` (a fixed
    code) and ``line`` are what may be logged.
    """

    def __init__(
        self, message: str, *, reason: str, field: str | None = None, line: int | None = None, **params: object
    ) -> None:
        super().__init__(message, field=field, **params)
        self.reason = reason
        self.line = line


class AuthRefused(StaffError):
    """Unknown user, disabled user or wrong password: deliberately indistinguishable."""


class RateLimited(StaffError):
    """Too many failed logins: this (user, address) must wait, or the user's ceiling is reached (``locked``)."""

    def __init__(self, message: str, *, retry_after_s: int, locked: bool = False) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.locked = locked


class LoginBusy(StaffError):
    """``max_pending_logins`` attempts are already waiting for Argon2: refused before anything is counted."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PdfUnavailable(StaffError):
    """PDF output cannot be produced on this host (fpdf2 or the TTF font is missing)."""
