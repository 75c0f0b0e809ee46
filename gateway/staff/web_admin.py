"""Respondent lists (view, import), the not-yet-enumerated list, and the census authority's exports.

Imports are read from the multipart stream with their own size cap
(``max_csv_bytes``), not the gateway's request-body limit. Exports stream:
the sheets export reads the census store in chunks and never holds it whole.
Each admin action that shows or exports names is written to the audit table.
"""

from __future__ import annotations

import csv
import io
import json
import re

import structlog
from aiohttp import BodyPartReader, web

from l10n import N_

from .coverage import coverage_csv_rows
from .errors import ListFileRejected
from .lists import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    import_list,
    load_entries,
    load_lists,
    parse_list_csv,
    spreadsheet_safe,
)
from .state import STAFF
from .views import language_of, with_security_headers
from .web_auth import Staffed, staff_handler, unreadable_form

__all__ = ["get_coverage_csv", "get_lists", "get_missing", "get_sheets_jsonl", "post_lists"]

log = structlog.get_logger("sanaq.gateway.staff")

_EXPORT_CHUNK = 2000
_MISSING_ROWS = 2000


@staff_handler()
async def get_lists(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    lists = await state.db.run(load_lists)
    return state.views.page(
        "lists.html", session=staffed.session, lists=lists, required=REQUIRED_COLUMNS, optional=OPTIONAL_COLUMNS
    )


def _file_name(raw: str | None) -> str:
    name = (raw or "upload.csv").replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[^\w.\- ]", "_", name)[:100] or "upload.csv"


@staff_handler(role="admin")
async def post_lists(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    views, limit = state.views, state.config.max_csv_bytes
    try:
        part = await staffed.parts.next() if staffed.parts is not None else None
        if not isinstance(part, BodyPartReader) or part.name != "file":
            return views.message(
                N_("No file"), N_("Choose a CSV file to import."), status=400, session=staffed.session
            )
        source = _file_name(part.filename)
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            if len(data) > limit:
                return views.message(
                    N_("File too large"),
                    N_("%(file)s is larger than %(limit)s bytes."),
                    status=413,
                    session=staffed.session,
                    file=source,
                    limit=limit,
                )
    except ValueError:  # aiohttp's multipart reader: a malformed or truncated part
        return unreadable_form(state, staffed.session)
    now = state.ctx.clock()
    try:
        parsed = parse_list_csv(bytes(data), max_bytes=limit, max_rows=state.config.max_csv_rows)
    except ListFileRejected as e:
        # the message may quote the file (a data row read as the header): log the reason code only
        log.info("staff.lists.file_rejected", reason=e.reason, line=e.line, user_id=staffed.session.user.id)
        lang = language_of(request, staffed.session, state.config)
        return views.message(
            N_("File rejected"),
            N_("%(file)s: %(reason)s"),
            status=400,
            session=staffed.session,
            file=source,
            reason=views.error_text(lang, e),
        )
    report = await state.db.run(
        lambda c: import_list(c, parsed, source_name=source, user_id=staffed.session.user.id, now_ms=now)
    )
    log.info(
        "staff.lists.imported",
        institutions=len(report.imported),
        rows=report.imported_rows,
        rejected=len(report.rejected),
        user_id=staffed.session.user.id,
    )
    state.feed.poke(lists_changed=True)
    status = 200 if report.imported or not report.rejected else 400
    return views.page("lists_report.html", status=status, session=staffed.session, report=report)


@staff_handler(role="admin")
async def get_missing(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    """Listed respondents that no stored sheet answers yet (shows names: admins only, audited)."""
    state = request.app[STAFF]
    chosen = request.query.get("institution", "").strip() or None
    await state.feed.current()
    seen = state.feed.effective
    lists, entries = await state.db.run(lambda c: (load_lists(c), load_entries(c, chosen)))
    missing = [e for e in entries if e.entry_id not in seen.get(e.institution_code, ())]
    await state.accounts.audit(staffed.session.user.id, "missing.viewed", institution=chosen or "*", rows=len(missing))
    return state.views.page(
        "missing.html",
        session=staffed.session,
        lists=lists,
        chosen=chosen or "",
        rows=missing[:_MISSING_ROWS],
        total=len(missing),
    )


@staff_handler(role="admin")
async def get_coverage_csv(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    state = request.app[STAFF]
    model = await state.feed.current()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in coverage_csv_rows(model.coverage):
        writer.writerow([spreadsheet_safe(v) for v in row])
    await state.accounts.audit(staffed.session.user.id, "export.coverage")
    stamp = state.config.local_text(state.ctx.clock()).replace("-", "").replace(":", "").replace(" ", "-")
    return web.Response(
        body=out.getvalue().encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="coverage-{stamp}.csv"'},
    )


@staff_handler(role="admin")
async def get_sheets_jsonl(request: web.Request, staffed: Staffed) -> web.StreamResponse:
    """Every stored sheet as one JSON line with its batch provenance, streamed in chunks.

    Line: ``{"device_id", "seq", "received_at_ms", "road", "batch_hash", "index", "sheet_id", "sheet"}``
    where ``sheet`` is the stored canonical JSON of the sheet, byte for byte.
    """
    state = request.app[STAFF]
    await state.accounts.audit(staffed.session.user.id, "export.sheets")
    log.info("staff.export.sheets", user_id=staffed.session.user.id)
    stamp = state.config.local_text(state.ctx.clock()).replace("-", "").replace(":", "").replace(" ", "-")
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson; charset=utf-8",
            "Content-Disposition": f'attachment; filename="sheets-{stamp}.jsonl"',
            "Cache-Control": "no-store",
        }
    )
    with_security_headers(response)
    await response.prepare(request)
    after = (0, -1)
    while True:
        rows = await state.queries.export_sheets(after, _EXPORT_CHUNK)
        if not rows:
            break
        lines = []
        for r in rows:
            head = json.dumps(
                {
                    "device_id": r.device_id,
                    "seq": r.seq,
                    "received_at_ms": r.received_at_ms,
                    "road": r.road,
                    "batch_hash": r.batch_hash.hex(),
                    "index": r.index,
                    "sheet_id": r.sheet_id,
                },
                separators=(",", ":"),
            )
            lines.append(f'{head[:-1]},"sheet":{r.body_json}}}\n')
        await response.write("".join(lines).encode("utf-8"))
        after = (rows[-1].batch_id, rows[-1].index)
    await response.write_eof()
    return response
