"""No personal data in the logs: a planted name goes through every list, act and sheet path of the dashboard.

The name is planted in respondent lists (good rows, bad rows, a file without
its header row, a file that is not UTF-8, a malformed file), in acts (recorded,
refused, printed as HTML and PDF) and in sheets synced by a tablet (dashboard,
summary, coverage, not-yet-enumerated list, exports). Each path must show the
name where it belongs (the page, the export) so the test proves the name went
through; the captured structlog events must not contain it anywhere.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from tablet.generator import KindMix, generate_sheets, tablet_profile

from .harness import World, post_batch
from .staff_browser import LIST_HEADER, StaffClient, StaffGateway, start_staff_gateway, upload

SURNAME = "Жанкелдинова"
GIVEN = "Ақмаржан"
WORKER = "Гүлнәр Тоқтарқызы Жанкелдинова"


@pytest.fixture
async def gw(world: World, tmp_path: Path) -> AsyncIterator[StaffGateway]:
    gateway = await start_staff_gateway(world, tmp_path)
    yield gateway
    await gateway.stop()


def planted_sheets(code: str) -> list[dict[str, Any]]:
    sheets = generate_sheets(7, 3, device_id="TAB-0001", mix=KindMix.only(hospital=1))
    for sheet in sheets:
        for person in sheet.get("persons", []):
            person["surname"], person["given_name"] = SURNAME, GIVEN
    return sheets


def row(code: str, n: int, surname: str = SURNAME, birth: str = "1980-01-02") -> str:
    return f"{code},{code}/{n:05d},2026-09-20,{surname},{GIVEN},,{birth},Медеуский район\n"


async def test_no_path_of_lists_acts_or_sheets_logs_a_planted_name(world: World, gw: StaffGateway) -> None:
    code = tablet_profile(7, "TAB-0001", KindMix.only(hospital=1)).institutions["hospital"].code
    admin = StaffClient(gw)
    shown: list[str] = []
    with structlog.testing.capture_logs() as events:
        try:
            assert await admin.login("admin") == 303
            # lists: the failure of finding 5 (no header: the first data row was logged), and the rest
            for data, expected in [
                (row(code, 1).encode(), 400),  # header row missing
                ((LIST_HEADER + row(code, 1)).encode("utf-16"), 400),  # not UTF-8
                ((LIST_HEADER + row(code, 1) + f'{code},2,2026-09-20,"{SURNAME}"x,\n').encode(), 400),  # malformed
                ((LIST_HEADER + row(code, 1, birth="2030-01-01") + row(code, 2, surname=SURNAME + "1")).encode(), 400),
                ((LIST_HEADER + "".join(row(code, n) for n in range(1, 6))).encode(), 200),
            ]:
                status, html = await upload(admin, data)
                assert status == expected, html[-300:]
                shown.append(html)
            # sheets: a tablet syncs sheets that carry the name
            async with aiohttp.ClientSession() as s:
                status, _ = await post_batch(
                    s, gw, world.batch("TAB-0001", 1, planted_sheets(code)), world.tablets["TAB-0001"]
                )
                assert status == 200
            for path in ("/staff/", "/staff/api/summary", "/staff/lists", f"/staff/missing?institution={code}",
                         "/staff/export/coverage.csv", "/staff/export/sheets.jsonl"):  # fmt: skip
                status, body, _ = await admin.get(path)
                assert status == 200, path
                shown.append(body)
            # acts: recorded, refused (future date, digits in a name), shown, printed
            act = {"kind": "issue", "device_id": "TAB-0001", "worker_name": WORKER, "staff_name": WORKER}
            for form, expected in [
                (act | {"acted_at": "2999-01-01T10:00"}, 400),
                (act | {"staff_name": WORKER + "7"}, 400),
                (act, 303),
            ]:
                status, html, resp = await admin.post("/staff/acts", form | {"csrf": admin.csrf})
                assert status == expected, html[-300:]
                shown.append(html)
            location = resp.headers["Location"]
            for path in (location, "/staff/acts", f"{location}/pdf"):
                status, body, _ = await admin.get(path)
                assert status == 200, path
                shown.append(body)
        finally:
            await admin.close()
    shown_text = "\n".join(shown)
    assert SURNAME in shown_text and WORKER in shown_text  # the name really went through these paths
    assert SURNAME.lower() in shown[0]  # the admin still sees what was wrong with the header-less file
    logged = json.dumps(events, ensure_ascii=False, default=str).lower()
    names = {e["event"] for e in events}
    assert {"staff.lists.file_rejected", "staff.lists.imported", "batch.stored", "staff.act.recorded"} <= names
    for name in (SURNAME, GIVEN, WORKER):
        assert name.lower() not in logged, name
    for event in events:  # and the rejected file is logged with its reason code
        if event["event"] == "staff.lists.file_rejected":
            assert set(event) <= {"event", "log_level", "reason", "line", "user_id"}, event
