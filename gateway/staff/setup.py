"""``setup_staff``: mount the staff dashboard on a gateway app built by ``gateway.app.create_app``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from gateway.context import GatewayContext
from gateway.web_codes import CODE_FEED
from keys.access_codes import pepper_id
from keys.certificates import CertificateIssuer
from wire import AccessCodeChange

from .accounts import Accounts
from .assignments import StaffAssignments
from .codes import code_changes, load_pepper
from .config import StaffConfig
from .db import StaffDb, StaffStorage
from .errors import StaffConfigError
from .feed import DashboardFeed
from .queries import make_queries
from .state import STAFF, StaffState
from .views import STATIC_DIR, STATIC_HEADERS, Views
from .web_accounts import get_accounts, post_unlock
from .web_admin import get_coverage_csv, get_lists, get_missing, get_sheets_jsonl, post_lists
from .web_auth import get_login, post_language, post_login, post_logout
from .web_certificates import (
    CERTIFICATES,
    StaffCertificates,
    get_certificate_by_sheet,
    get_certificates,
    get_certificates_pdf,
)
from .web_codes import get_codes, get_institution_codes, post_mint, post_reissue, post_resident, post_revoke
from .web_pages import get_act_page, get_act_pdf, get_acts, get_dashboard, get_events, get_summary, post_act
from .web_review import get_review, get_review_case, post_list_match, post_review_case

__all__ = ["setup_staff"]

log = structlog.get_logger("sanaq.gateway.staff")

_INSTITUTION = "/staff/codes/{institution:[A-Z]{2}-[0-9]{6}}"


async def _to_dashboard(request: web.Request) -> web.Response:
    return web.Response(status=303, headers={"Location": "/staff/"})


def setup_staff(app: web.Application, ctx: GatewayContext, config: StaffConfig) -> None:
    """Register the /staff/ routes and the dashboard's own resources on ``app`` (before it starts).

    Staff data lives in staff.db on a SQLite deployment and in the census
    database's staff tables on PostgreSQL (ADR 0012). Raises
    ``StaffConfigError`` (a ``ConfigError``) when the dashboard cannot run
    with this configuration (e.g. PostgreSQL without ``codes_pepper_file``,
    which every instance must share). Does nothing when ``config.enabled`` is false.
    """
    if not config.enabled:
        return
    census_path = ctx.config.sqlite_path
    queries = make_queries(ctx.config.database, census_path)
    db: StaffStorage
    if census_path is not None:
        db = StaffDb(config.staff_db(census_path), ctx.clock)
        pepper_path = config.codes_pepper(db.path)
    else:
        if config.codes_pepper_file is None or not config.codes_pepper_file.is_file():
            # never made here on first use: instances making their own would each hold another pepper
            raise StaffConfigError(
                "staff.codes_pepper_file must be set on PostgreSQL and the file must exist: every gateway instance"
                " must hold the same access-code pepper (make it once, 32 random bytes, and copy it to each)"
                + ("" if config.codes_pepper_file is None else f"; missing: {config.codes_pepper_file}")
            )
        from .db_postgres import PgStaffDb  # noqa: PLC0415 - psycopg is needed (and installed) on PostgreSQL only

        db = PgStaffDb(ctx.config.database)
        pepper_path = config.codes_pepper_file
    views = Views(config)
    feed = DashboardFeed(queries=queries, db=db, ctx=ctx, config=config, render=views.fragments)
    ctx.assignments = StaffAssignments(db, feed, retry_after_s=ctx.config.limits.retry_after_s)
    app[STAFF] = StaffState(
        config=config,
        ctx=ctx,
        db=db,
        accounts=Accounts(db, config, ctx.clock),
        queries=queries,
        feed=feed,
        views=views,
        pepper_path=pepper_path,
    )
    routes = (
        ("GET", "/staff", _to_dashboard),
        ("GET", "/staff/", get_dashboard),
        ("GET", "/staff/login", get_login),
        ("POST", "/staff/login", post_login),
        ("POST", "/staff/logout", post_logout),
        ("POST", "/staff/language", post_language),
        ("GET", "/staff/api/summary", get_summary),
        ("GET", "/staff/events", get_events),
        ("GET", "/staff/acts", get_acts),
        ("POST", "/staff/acts", post_act),
        ("GET", "/staff/acts/{act_no:[A-Za-z0-9-]{1,40}}", get_act_page),
        ("GET", "/staff/acts/{act_no:[A-Za-z0-9-]{1,40}}/pdf", get_act_pdf),
        ("GET", "/staff/lists", get_lists),
        ("POST", "/staff/lists", post_lists),
        ("GET", "/staff/missing", get_missing),
        ("GET", "/staff/review", get_review),
        ("GET", "/staff/review/{case_id:[0-9]{1,12}}", get_review_case),
        ("POST", "/staff/review/{case_id:[0-9]{1,12}}", post_review_case),
        ("POST", "/staff/review/list-match", post_list_match),
        ("GET", "/staff/export/coverage.csv", get_coverage_csv),
        ("GET", "/staff/export/sheets.jsonl", get_sheets_jsonl),
        ("GET", "/staff/certificates", get_certificates),
        ("GET", "/staff/certificates/sheet", get_certificate_by_sheet),
        ("GET", "/staff/certificates/{institution:[A-Za-z0-9][A-Za-z0-9._-]{0,63}}/pdf", get_certificates_pdf),
        ("GET", "/staff/accounts", get_accounts),
        ("POST", "/staff/accounts/unlock", post_unlock),
        ("GET", "/staff/codes", get_codes),
        ("GET", _INSTITUTION, get_institution_codes),
        ("POST", _INSTITUTION + "/mint", post_mint),
        ("POST", _INSTITUTION + "/revoke", post_revoke),
        ("POST", _INSTITUTION + "/reissue", post_reissue),
        ("POST", _INSTITUTION + "/residents", post_resident),
    )
    if config.certificate_key_dir is not None:  # a key that does not load stops the start (BundleError)
        app[CERTIFICATES] = StaffCertificates(CertificateIssuer.load(config.certificate_key_dir, ctx.root_public_key))
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    app.router.add_static("/staff/static/", STATIC_DIR, show_index=False)
    app[CODE_FEED] = functools.partial(_code_changes, db, pepper_path)
    app.on_response_prepare.append(_staff_headers)
    app.cleanup_ctx.append(_lifecycle)
    if census_path is None:  # PostgreSQL: other instances change the data too
        app.cleanup_ctx.append(functools.partial(_follow, ctx.config.database))
    app.on_shutdown.append(_end_streams)


async def _code_changes(db: StaffStorage, pepper_path: Path, since: int, limit: int
                        ) -> tuple[list[AccessCodeChange], int, str]:
    """What ``GET /v1/web/access-codes/since/{version}`` lists (gateway/web_codes.py), and the pepper's id."""
    changes, latest = await db.run(lambda c: code_changes(c, since, limit))
    pepper = await asyncio.to_thread(load_pepper, pepper_path)
    return changes, latest, pepper_id(pepper)


async def _staff_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every /staff response gets, also those no staff handler builds (static files, 404s).

    HSTS on every staff response served over HTTPS (``hsts_max_age_s``, 0 to
    leave it out); the static files get the pages' CSP and nosniff. Runs on the
    gateway app's ``on_response_prepare`` signal and touches nothing outside
    ``/staff``, so the gateway's own responses are left to the gateway.
    """
    if request.path != "/staff" and not request.path.startswith("/staff/"):
        return
    config = request.app[STAFF].config
    if request.secure and config.hsts_max_age_s > 0:
        response.headers.setdefault("Strict-Transport-Security", f"max-age={config.hsts_max_age_s}")
    if request.path.startswith("/staff/static/"):
        for name, value in STATIC_HEADERS.items():
            response.headers.setdefault(name, value)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Open staff.db and the census read connection, run the feed; undo in reverse on cleanup."""
    state = app[STAFF]
    await state.db.open()
    try:
        await state.queries.open()
    except BaseException:
        await state.db.close()
        raise
    task = asyncio.create_task(state.feed.run(), name="staff-dashboard-feed")
    log.info("staff.started", staff_db=state.db.where)
    yield
    await state.feed.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await state.queries.close()
    await state.db.close()
    log.info("staff.stopped")


async def _follow(dsn: str, app: web.Application) -> AsyncIterator[None]:
    """On PostgreSQL: follow other instances' changes (``listen_postgres``) while the app runs."""
    from .listen_postgres import follow_changes  # noqa: PLC0415 - psycopg on PostgreSQL only

    task = asyncio.create_task(follow_changes(dsn, app[STAFF].feed), name="staff-dashboard-listen")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _end_streams(app: web.Application) -> None:
    """On shutdown, end the event streams so graceful shutdown does not wait on them."""
    await app[STAFF].feed.close()
