"""Gateway refusals: every one becomes an RFC 9457 problem with a stable code.

::

    GatewayError                  base; carries http status and code
    +-- ClientProblem             the client is at fault (4xx); built from a wire error
    |   |                         or raised directly (conflict, device-mismatch, ...)
    |   +-- ClientGone            the client hung up or broke the framing mid-body
    |                             (logged as a refusal, never as a failure)
    +-- Unavailable               the store cannot take writes now (503 + Retry-After)

Wire errors map to problems through ``problem_for_wire_error``; the mapping is
the error-code table of ``docs/protocol.md``.
"""

from __future__ import annotations

from wire import errors as we

__all__ = [
    "STATUS_FOR_CODE",
    "ClientGone",
    "ClientProblem",
    "GatewayError",
    "Unavailable",
    "problem_for_wire_error",
]

STATUS_FOR_CODE: dict[str, int] = {
    "malformed": 400,
    "truncated": 400,
    "trailing-bytes": 400,
    "non-canonical": 400,
    "unsupported-version": 400,
    "unsupported-schema": 400,
    "hash-mismatch": 400,
    "wrong-recipient": 400,
    "binding-mismatch": 400,
    "digest-mismatch": 400,
    "missing-signature": 401,
    "bad-signature-input": 401,
    "bad-signature": 401,
    "unknown-key": 401,
    "clock-skew": 401,
    "replay": 401,
    "revoked": 403,
    "device-mismatch": 403,
    "forbidden": 403,
    "not-found": 404,
    "method-not-allowed": 405,
    "request-timeout": 408,
    "conflict": 409,
    "rollback": 409,
    "expired": 410,
    "oversize": 413,
    "unsupported-media-type": 415,
    "too-many-requests": 429,
    "internal": 500,
    "unavailable": 503,
}


class GatewayError(Exception):
    code = "internal"

    def __init__(self, detail: str, *, code: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code
        self.detail = detail
        self.retry_after_s = retry_after_s

    @property
    def status(self) -> int:
        return STATUS_FOR_CODE[self.code]


class ClientProblem(GatewayError):
    pass


class ClientGone(ClientProblem):
    code = "malformed"


class Unavailable(GatewayError):
    code = "unavailable"


def problem_for_wire_error(err: we.WireError) -> ClientProblem:
    code = err.code if err.code in STATUS_FOR_CODE else "malformed"
    return ClientProblem(str(err), code=code)
