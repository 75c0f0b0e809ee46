"""``GET /v1/devices/{device_id}/assignments``: a tablet's signed, versioned list of its institution's entries."""

from __future__ import annotations

import base64
import re
from typing import Protocol

import structlog
from aiohttp import web

from wire import check_device_id, make_assignments
from wire.assignments import Assignment
from wire.errors import DecodeError

from .context import CTX, GatewayContext
from .errors import ClientProblem, Unavailable
from .web_common import signed_request

__all__ = ["AssignmentSource", "get_device_assignments"]

log = structlog.get_logger("sanaq.gateway")
_SINCE = re.compile(r"^(0|[1-9][0-9]{0,15})$")
_MAX_SINCE = 2**53 - 1


class AssignmentSource(Protocol):
    async def assignments(
        self, *, institution: str, device_id: str, since: int
    ) -> tuple[int, int, list[Assignment]]: ...


def _since(request: web.Request) -> int:
    raw = request.query.getall("since", [])
    if not raw:
        return 0
    if len(raw) > 1 or not _SINCE.match(raw[0]) or int(raw[0]) > _MAX_SINCE:
        raise ClientProblem("since must be one integer 0..2^53-1", code="malformed")
    return int(raw[0])


async def get_device_assignments(request: web.Request) -> web.Response:
    ctx: GatewayContext = request.app[CTX]
    try:
        device_id = check_device_id(request.match_info["device_id"])
    except DecodeError as e:
        raise ClientProblem("device id malformed", code="malformed") from e
    since = _since(request)
    auth, trust = await signed_request(request, ctx, b"")
    if auth.signer.kind != "tablet" or auth.signer.ident != device_id:
        raise ClientProblem("a tablet may read only its own assignments", code="forbidden")
    tablet = trust.tablet(device_id)  # in service, else RevokedKeyError (403 revoked)
    source = ctx.assignments
    if source is None:
        raise Unavailable(
            "this gateway holds no respondent lists (the staff dashboard, which imports them, is not running here)",
            retry_after_s=ctx.config.limits.retry_after_s,
        )
    version, used_since, entries = await source.assignments(
        institution=tablet.institution, device_id=device_id, since=since
    )
    doc = make_assignments(
        device_id=device_id,
        institution=tablet.institution,
        issued_at_ms=ctx.clock(),
        version=version,
        since=used_since,
        entries=entries,
        gateway_key=ctx.receipt_key,
    )
    log.info("assignments.served", version=version, since=used_since, entries=len(entries))
    return web.json_response(
        {
            "assignments": base64.b64encode(doc).decode("ascii"),
            "device_id": device_id,
            "institution": tablet.institution,
            "version": version,
            "since": used_since,
            "entries": len(entries),
        }
    )
