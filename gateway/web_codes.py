"""``GET /v1/web/access-codes/since/{version}``: the signed access-code changes a web service polls.

The codes live in the staff dashboard's database (``gateway.staff.codes``);
``setup_staff`` installs the reader under ``CODE_FEED``. A gateway without
the dashboard holds no codes and answers ``404 not-found``. Only an active web
service may ask; the answer is an ``access-codes`` document signed with the
receipt key and bound to the asker's id and the asked version
(docs/protocol.md section 9.2).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable
from typing import Protocol

import structlog
from aiohttp import web

from wire import AccessCodeChange, make_access_codes
from wire.accesscodes import MAX_CODE_CHANGES
from wire.canonical import MAX_SAFE_INT

from .context import CTX, GatewayContext
from .errors import ClientProblem
from .web_common import signed_request

__all__ = ["CODE_FEED", "CodeFeed", "get_access_codes"]



class CodeFeed(Protocol):
    """``(since, limit) -> (changes after since, ascending, at most limit; the highest version held; pepper_id)``."""

    def __call__(self, since: int, limit: int, /) -> Awaitable[tuple[list[AccessCodeChange], int, str]]: ...


CODE_FEED: web.AppKey[CodeFeed] = web.AppKey("sanaq_access_code_feed")
log = structlog.get_logger("sanaq.gateway")
_VERSION = re.compile(r"0|[1-9][0-9]{0,15}")


async def get_access_codes(request: web.Request) -> web.Response:
    ctx: GatewayContext = request.app[CTX]
    auth, _ = await signed_request(request, ctx, b"")
    if auth.signer.kind != "web":
        raise ClientProblem("only web services read access codes", code="forbidden")
    raw = request.match_info["version"]
    if not _VERSION.fullmatch(raw) or int(raw) > MAX_SAFE_INT:
        raise ClientProblem("version must be a decimal integer 0..2^53-1 without leading zeros", code="malformed")
    feed = request.app.get(CODE_FEED)
    if feed is None:
        raise ClientProblem("this gateway holds no access codes (the staff dashboard is off)", code="not-found")
    since = int(raw)
    changes, latest, pepper = await feed(since, MAX_CODE_CHANGES)
    doc = make_access_codes(web_id=auth.signer.ident, issued_at_ms=ctx.clock(), pepper_id=pepper, since=since,
                            latest=latest, codes=changes, gateway_key=ctx.receipt_key)
    log.info("access_codes.served", web_id=auth.signer.ident, since=since, changes=len(changes), latest=latest)
    return web.json_response({"access_codes": base64.b64encode(doc).decode("ascii"), "since": since,
                              "latest": latest, "count": len(changes)})
