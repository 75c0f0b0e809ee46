"""The review queue over real HTTP: a respondent answers online (road web:<id>), a tablet then interviews the
same list entry; both sheets are stored, one person is counted, one case waits, and an administrator resolves
it in the dashboard, the decision recorded with who and when."""

from __future__ import annotations

import copy
import csv
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from nacl.signing import SigningKey

from tablet.generator import KindMix, generate_sheets, tablet_profile

from .harness import World, post_batch, seed
from .staff_browser import StaffClient, StaffGateway, list_csv, start_staff_gateway, upload

WEB_ID = "WEB-AST-01"
MIX = KindMix.only(hospital=1)


@pytest.fixture
def world() -> World:
    w = World.make(n_tablets=2)
    w.webs[WEB_ID] = SigningKey(seed("web-1"))
    return w


@pytest.fixture
async def gw(world: World, tmp_path: Path) -> AsyncIterator[StaffGateway]:
    gateway = await start_staff_gateway(world, tmp_path)
    yield gateway
    await gateway.stop()


@pytest.fixture
async def admin(gw: StaffGateway) -> AsyncIterator[StaffClient]:
    c = StaffClient(gw)
    assert await c.login("admin") == 303
    yield c
    await c.close()


async def summary(client: StaffClient) -> dict:
    async with client.session.get(client.gw.url + "/staff/api/summary") as r:
        assert r.status == 200
        return await r.json()


async def online_then_tablet(world: World, gw: StaffGateway) -> tuple[str, list[dict]]:
    code = tablet_profile(7, "TAB-0001", MIX).institutions["hospital"].code
    tablet_sheets = generate_sheets(7, 3, device_id="TAB-0001", mix=MIX)  # entries 1..3
    online = copy.deepcopy(tablet_sheets[0])
    online["sheet_id"] = str(uuid.uuid4())
    online["source"] = "interview"
    async with aiohttp.ClientSession() as s:
        status, _ = await post_batch(s, gw, world.batch(WEB_ID, 1, [online]), world.webs[WEB_ID])
        assert status == 200
        status, answer = await post_batch(s, gw, world.batch("TAB-0001", 1, tablet_sheets), world.tablets["TAB-0001"])
        assert status == 200 and answer["duplicate"] is False
    return code, tablet_sheets


async def test_online_answer_then_tablet_interview_counts_one_person_and_opens_one_case(
    world: World, gw: StaffGateway, admin: StaffClient
) -> None:
    code = tablet_profile(7, "TAB-0001", MIX).institutions["hospital"].code
    assert (await upload(admin, list_csv(code, range(1, 6))))[0] == 200
    _, sheets = await online_then_tablet(world, gw)
    answer = await summary(admin)
    assert answer["sheets"] == 4  # the second sheet for entry 1 is stored, never dropped
    assert answer["coverage"]["persons"] == 3 and answer["coverage"]["review_open"] == 1
    assert answer["coverage"]["institutions"][code] == [3, 5]
    status, html, _ = await admin.get("/staff/")
    assert status == 200 and '<a class="n" id="n-review" href="/staff/review">1</a>' in html

    status, body, _ = await admin.get("/staff/export/coverage.csv")
    row = {(r["level"], r["key"]): r for r in csv.DictReader(io.StringIO(body))}[("institution", code)]
    interviewed = sum(s["source"] == "interview" for s in sheets[1:])
    assert (row["persons"], row["enumerated_online"], row["interviewed"], row["review_open"]) == (
        "3",
        "1",
        str(interviewed),
        "1",
    )
    assert row["administration_records"] == str(2 - interviewed)

    viewer = StaffClient(gw)
    try:
        assert await viewer.login("viewer") == 303
        status, html, _ = await viewer.get("/staff/review")
        assert status == 200 and 'id="case-1"' in html and f"web:{WEB_ID}" in html and "TAB-0001" in html
        assert sheets[0]["persons"][0]["surname"] not in html  # the queue shows provenance, not names
        status, _, _ = await viewer.get("/staff/review/1")
        assert status == 403
    finally:
        await viewer.close()

    status, html, _ = await admin.get("/staff/review/1")
    assert status == 200 and sheets[0]["persons"][0]["surname"] in html and "same-entry" in html
    status, html, _ = await admin.post("/staff/review/1", {"csrf": admin.csrf, "decision": "merge"})
    assert status == 400 and "Not decided" in html
    assert gw.staff_rows("SELECT count(*) FROM review_decisions") == [(0,)]

    status, html, _ = await admin.post("/staff/review/1", {"csrf": admin.csrf, "decision": "different"})
    assert status == 200 and f"The list gained entry {code}/00006" in html
    admin_id = gw.staff_rows("SELECT id FROM users WHERE username = 'admin'")[0][0]
    decided = gw.staff_rows("SELECT case_id, decision, new_entry_id, decided_by, decided_at_ms FROM review_decisions")
    assert decided[0][:4] == (1, "different", f"{code}/00006", admin_id) and decided[0][4] > 0
    assert gw.staff_rows("SELECT entry_count FROM respondent_lists") == [(6,)]
    assert gw.staff_rows("SELECT action FROM audit WHERE action LIKE 'review.%' ORDER BY id") == [
        ("review.viewed",),
        ("review.viewed",),
        ("review.decided",),
        ("review.viewed",),
    ]
    answer = await summary(admin)
    assert answer["coverage"]["persons"] == 4 and answer["coverage"]["review_open"] == 0
    assert answer["coverage"]["institutions"][code] == [4, 6]

    status, html, _ = await admin.post("/staff/review/1", {"csrf": admin.csrf, "decision": "keep-first"})
    assert status == 400 and "already decided" in html
    status, _, _ = await admin.post("/staff/review/1", {"csrf": "forged", "decision": "keep-first"})
    assert status == 403
    status, _, _ = await admin.get("/staff/review/99")
    assert status == 404


async def test_keep_second_moves_the_count_to_the_tablet_sheet(
    world: World, gw: StaffGateway, admin: StaffClient
) -> None:
    code = tablet_profile(7, "TAB-0001", MIX).institutions["hospital"].code
    assert (await upload(admin, list_csv(code, range(1, 6))))[0] == 200
    await online_then_tablet(world, gw)
    before = (await summary(admin))["coverage"]
    status, html, _ = await admin.post("/staff/review/1", {"csrf": admin.csrf, "decision": "keep-second"})
    assert status == 200 and "decided: keep-second" in html
    status, body, _ = await admin.get("/staff/export/coverage.csv")
    row = {(r["level"], r["key"]): r for r in csv.DictReader(io.StringIO(body))}[("institution", code)]
    assert (row["persons"], row["enumerated_online"], row["review_open"]) == ("3", "0", "0")
    assert (await summary(admin))["coverage"]["persons"] == before["persons"] == 3
