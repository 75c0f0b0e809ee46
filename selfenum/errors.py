"""The one exception tree of ``selfenum/``, grouped by who is at fault::

    SelfenumError                 base
     +-- RespondentError          the respondent's input or timing; shown on the page in their language
     |    +-- CodeRefused         wrong, revoked, used-up or throttled code (one answer for all, by design)
     |    +-- WindowClosed        outside the online window: nothing is accepted
     |    +-- FormRefused         CSRF token missing or wrong, body too large, session expired
     +-- OperatorError            configuration, bundle, state directory, code lists (CLI and start-up)
     +-- DeliveryError            the gateway refused a sealed sheet for good (kept, never dropped)

Errors carry ids (entry id, path), never an access code, a name or any answer.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CodeRefused", "DeliveryError", "FormRefused", "OperatorError", "RespondentError", "SelfenumError",
           "WindowClosed"]


class SelfenumError(Exception):
    code = "selfenum-error"

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.facts = facts


class RespondentError(SelfenumError):
    code = "respondent"


class CodeRefused(RespondentError):
    code = "code-refused"


class WindowClosed(RespondentError):
    code = "window-closed"


class FormRefused(RespondentError):
    code = "form-refused"


class OperatorError(SelfenumError):
    code = "operator"


class DeliveryError(SelfenumError):
    code = "delivery"
