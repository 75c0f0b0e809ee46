"""Errors of the signed gateway client, grouped by who is at fault::

    GatewayClientError
     +-- GatewayUnreachable   network error, timeout, 5xx, 429: nothing was decided, retry later
     |                        (``retry_after_s``: the server's Retry-After, if it sent one)
     +-- GatewayRefused       a 4xx problem answer (``status``, ``problem_code``, ``server_time_ms``)
     +-- BadAnswer            a 200 answer the client cannot read (no receipt in it)

Errors carry facts (status, URL, code), never request bodies or keys.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BadAnswer", "GatewayClientError", "GatewayRefused", "GatewayUnreachable"]


class GatewayClientError(Exception):
    code = "gateway-client"

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.facts = facts


class GatewayUnreachable(GatewayClientError):
    code = "unreachable"

    def __init__(self, message: str, *, retry_after_s: float | None = None, **facts: Any) -> None:
        super().__init__(message, **facts)
        self.retry_after_s = retry_after_s


class GatewayRefused(GatewayClientError):
    code = "refused"

    def __init__(
        self, message: str, *, status: int, problem_code: str, server_time_ms: int | None = None, **facts: Any
    ) -> None:
        super().__init__(message, status=status, problem_code=problem_code, **facts)
        self.status = status
        self.problem_code = problem_code
        self.server_time_ms = server_time_ms


class BadAnswer(GatewayClientError):
    code = "bad-answer"
