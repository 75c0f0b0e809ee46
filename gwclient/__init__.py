"""The signed gateway client: the one piece of code every client of the gateway signs its requests with.

Programs (the USB station, the self-enumeration web service, later the
tablet) sit above this package; it uses only ``wire/`` (STYLE.md section 19).
"""

from __future__ import annotations

from .client import BATCH_TYPE, CUSTODY_TYPE, BatchAnswer, SignedGatewayClient, parse_retry_after
from .errors import BadAnswer, GatewayClientError, GatewayRefused, GatewayUnreachable

__all__ = [
    "BATCH_TYPE",
    "CUSTODY_TYPE",
    "BadAnswer",
    "BatchAnswer",
    "GatewayClientError",
    "GatewayRefused",
    "GatewayUnreachable",
    "SignedGatewayClient",
    "parse_retry_after",
]
