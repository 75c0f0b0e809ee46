"""The review queue over real HTTP: a respondent answers online (road web:<id>), a tablet then interviews the
same list entry; both sheets are stored, one person is counted, one case waits, and an administrator resolves
it in the dashboard, the decision recorded with who and when."""

from __future__ import annotations

import asyncio
import copy
import csv
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from tablet.generator import KindMix, generate_sheets, tablet_profile

from .harness import World, post_batch, seed
from .staff_browser import (
    PASSWORD,
    StaffClient,
    StaffGateway,
    list_csv,
    signed_in,
    start_staff_gateway,
    summary,
    upload,
)
from .test_staff_browser import browser, wait_until  # noqa: F401 - fixture

WEB_ID = "WEB-AST-01"
MIX = KindMix.only(hospital=1)


@pytest.fixture
def world() -> World:
    w = World.make(n_tablets=2)
    w.webs[WEB_ID] = SigningKey(seed("web-1"))
    return w


@pytest.fixture
async def gw(world: World, tmp_path: Path, staff_database: str) -> AsyncIterator[StaffGateway]:
    gateway = await start_staff_gateway(world, tmp_path, database=staff_database)
    yield gateway
    await gateway.stop()


@pytest.fixture
async def admin(gw: StaffGateway) -> AsyncIterator[StaffClient]:
    async with signed_in(gw, "admin") as c:
        yield c



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


def click_live(driver: Any, how: str, what: str) -> None:
    """Click an element of a live section: an update may replace it between finding and clicking."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt(d: Any) -> bool:
        try:
            d.find_element(how, what).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_until(driver, attempt)


def resolve_in_browser(driver: Any, url: str) -> dict[str, str]:
    driver.get(url + "/staff/login")
    driver.find_element("name", "username").send_keys("admin")
    driver.find_element("name", "password").send_keys(PASSWORD)
    driver.find_element("css selector", "#login-form button").click()
    wait_until(driver, lambda d: d.find_elements("id", "fleet-table"))
    click_live(driver, "id", "n-review")
    wait_until(driver, lambda d: d.find_elements("id", "review-open"))
    queue = driver.find_element("id", "review-open-count").text
    driver.find_element("css selector", "#case-1 a").click()
    wait_until(driver, lambda d: d.find_elements("id", "case-form"))
    driver.find_element("css selector", "#case-form button[value='keep-second']").click()
    wait_until(driver, lambda d: d.find_elements("id", "case-decision"))
    decided = driver.find_element("id", "case-decision").text
    driver.get(url + "/staff/review")
    return {"queue": queue, "decided": decided, "after": driver.find_element("id", "review-open-count").text}


async def test_an_administrator_resolves_the_case_in_a_real_browser(
    world: World,
    gw: StaffGateway,
    admin: StaffClient,
    browser: Any,  # noqa: F811 - the imported fixture
) -> None:
    code = tablet_profile(7, "TAB-0001", MIX).institutions["hospital"].code
    assert (await upload(admin, list_csv(code, range(1, 6))))[0] == 200
    await online_then_tablet(world, gw)
    seen = await asyncio.to_thread(resolve_in_browser, browser, gw.url)
    assert seen["queue"] == "1 open case."
    assert seen["decided"].startswith("Decided: keep-second by admin on ")
    assert seen["after"] == "0 open cases."
    decided = gw.staff_rows("SELECT decision, decided_by FROM review_decisions")
    assert decided == [("keep-second", gw.staff_rows("SELECT id FROM users WHERE username = 'admin'")[0][0])]


def test_decisions_move_counts_as_documented() -> None:
    from gateway.staff.queries import CaseSheet, PersonRow, ReviewCaseRow
    from gateway.staff.review import Decision, effective_persons

    def sheet(batch: int, entry: str, road: str, source: str = "interview") -> CaseSheet:
        return CaseSheet(batch, 0, f"D{batch}", 1, road, 1000 + batch, 900, entry, source)

    persons = [
        PersonRow(1, "AB-000001", "AB-000001/00001", 1, 0, "web:W", "interview", "KZ-71", "W", 1001),
        PersonRow(2, "AB-000001", "AB-000001/00099", 2, 0, "online", "interview", "KZ-71", "D2", 1002),
        PersonRow(3, "AB-000001", "AB-000001/00003", 3, 0, "online", "interview", "KZ-71", "D3", 1003),
        PersonRow(4, "AB-000001", "AB-000001/00004", 5, 0, "online", "interview", "KZ-71", "D5", 1005),
    ]
    cases = [
        # entry 99 (off the list) is the person of entry 1: a possible duplicate
        ReviewCaseRow(
            1,
            "possible-duplicate",
            "AB-000001",
            "AB-000001/00001",
            1,
            sheet(1, "AB-000001/00001", "web:W"),
            sheet(2, "AB-000001/00099", "online"),
        ),
        # entry 3 enumerated twice
        ReviewCaseRow(
            2,
            "same-entry",
            "AB-000001",
            "AB-000001/00003",
            1,
            sheet(3, "AB-000001/00003", "online"),
            sheet(4, "AB-000001/00003", "station:S", "administration_records"),
        ),
        ReviewCaseRow(
            3,
            "possible-duplicate",
            "AB-000001",
            "AB-000001/00003",
            1,
            sheet(3, "AB-000001/00003", "online"),
            sheet(5, "AB-000001/00004", "online"),
        ),
    ]
    undecided = effective_persons(persons, cases, {})["AB-000001"]
    assert sorted(undecided) == ["AB-000001/00001", "AB-000001/00003", "AB-000001/00004", "AB-000001/00099"]

    def decided(**d: str) -> dict[int, Decision]:
        return {int(k[1:]): Decision(int(k[1:]), v, "AB-000001", None, 1, 1) for k, v in d.items()}

    got = effective_persons(persons, cases, decided(c1="keep-first", c2="keep-first", c3="keep-second"))
    counted = got["AB-000001"]
    assert sorted(counted) == ["AB-000001/00001", "AB-000001/00004"]  # 99 is the person of 1; 3 the person of 4
    assert counted["AB-000001/00001"].category == "online"
    got = effective_persons(persons, cases, decided(c1="different", c2="keep-second", c3="keep-first"))
    counted = got["AB-000001"]
    assert sorted(counted) == ["AB-000001/00001", "AB-000001/00003", "AB-000001/00099"]
    assert counted["AB-000001/00003"].category == "records"  # the second sheet (USB, from records) counts


async def test_an_off_list_sheet_of_a_listed_person_is_matched_and_decided(
    world: World, gw: StaffGateway, admin: StaffClient
) -> None:
    from tablet.generator import sheet_for_entry

    from .staff_browser import surname

    code = tablet_profile(7, "TAB-0001", MIX).institutions["hospital"].code
    assert (await upload(admin, list_csv(code, range(1, 4))))[0] == 200
    assert surname(2) == "Сейткалив" and surname(3) == "Сейткалиг"
    # entry 9 is not on the list; its person is listed entry 2, written in Latin letters
    same = sheet_for_entry(
        {"entry_id": f"{code}/00009", "surname": "Seytkaliv", "given_name": "Arman", "birth_date": "1980-01-03"},
        institution=code,
        device_id="TAB-0001",
        seed=1,
        filled_at_ms=1_700_000_000_000,
    )
    other = sheet_for_entry(
        {"entry_id": f"{code}/00010", "surname": "Seitkalig", "given_name": "ARMAN", "birth_date": "1980-01-04"},
        institution=code,
        device_id="TAB-0001",
        seed=1,
        filled_at_ms=1_700_000_000_000,
    )
    async with aiohttp.ClientSession() as s:
        status, _ = await post_batch(s, gw, world.batch("TAB-0001", 1, [same, other]), world.tablets["TAB-0001"])
        assert status == 200
    answer = (await summary(admin))["coverage"]
    assert (answer["enumerated"], answer["persons"], answer["review_open"]) == (0, 2, 2)

    status, html, _ = await admin.get("/staff/review")
    assert status == 200 and 'id="match-1-0"' in html and 'id="match-1-1"' in html and "2 open cases." in html
    for bad, code_ in (
        ({"batch_id": "x", "index": "0"}, 400),
        ({"batch_id": "7", "index": "0"}, 404),
        ({"batch_id": "1", "index": "0", "decision": "merge"}, 400),
    ):
        status, _, _ = await admin.post("/staff/review/list-match", {"csrf": admin.csrf, **bad})
        assert status == code_, bad
    status, html, _ = await admin.post(
        "/staff/review/list-match", {"csrf": admin.csrf, "batch_id": "1", "index": "0", "decision": "same-person"}
    )
    assert status == 200 and f"{code}/00009 is {code}/00002: counted once." in html
    status, html, _ = await admin.post(
        "/staff/review/list-match", {"csrf": admin.csrf, "batch_id": "1", "index": "1", "decision": "different"}
    )
    assert status == 200 and "the list gained it" in html
    answer = (await summary(admin))["coverage"]
    assert answer["institutions"][code] == [2, 4]  # entry 2 by the matched sheet; entry 10 now listed
    assert (answer["persons"], answer["review_open"]) == (2, 0)
    status, html, _ = await admin.post(
        "/staff/review/list-match", {"csrf": admin.csrf, "batch_id": "1", "index": "0", "decision": "different"}
    )
    assert status == 400 and "already decided" in html
    assert gw.staff_rows("SELECT entry_id, listed_entry_id, decision FROM list_match_decisions ORDER BY idx") == [
        (f"{code}/00009", f"{code}/00002", "same-person"),
        (f"{code}/00010", f"{code}/00003", "different"),
    ]
