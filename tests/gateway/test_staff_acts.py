"""Acceptance-transfer acts: recorded by admins, checked against the registry, printable as HTML and PDF."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
from pypdf import PdfReader

from gateway.staff import StaffConfig
from gateway.staff.acts import Act, reconcile
from wire import TabletEntry

from .harness import World
from .staff_browser import StaffClient, StaffGateway, census_around, signed_in, staff_config, start_staff_gateway

WORKER = "Әлия Нұрланқызы Оспанова"
STAFF = "Пётр Иванович Сидоров"
ISSUE = {
    "kind": "issue",
    "device_id": "TAB-0001",
    "worker_name": WORKER,
    "staff_name": STAFF,
    "acc_charger": "on",
    "acc_cable": "on",
    "other_accessories": "стилус",
    "condition_note": "без царапин",
}


def local_minutes_ago(minutes: int) -> str:
    """``YYYY-MM-DDTHH:MM`` in the dashboard's default zone (UTC+05:00), ``minutes`` before now."""
    zone = timezone(timedelta(minutes=StaffConfig().utc_offset_minutes))
    return (datetime.now(zone) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M")


def act(kind: str, worker_id: str = "W0001") -> Act:
    return Act(
        act_no="AT-2026-00001", kind=kind, device_id="TAB-0001", usb_serial="S", institution="AB-000001",
        worker_id=worker_id, worker_name="x", staff_name="y", accessories=(), other_accessories="",
        condition_note="", acted_at_ms=0, created_at_ms=0, created_by="admin", registry_version=1,
        registry_status="issued",
    )  # fmt: skip


class Snap:
    def __init__(self, status: str | None, worker_id: str = "W0001") -> None:
        self.tablets = [] if status is None else [
            TabletEntry("TAB-0001", b"k" * 16, b"p" * 32, "S", "AB-000001", worker_id, status, 0, None)
        ]  # fmt: skip


@pytest.mark.parametrize(
    ("last_act", "status", "registry_worker", "ok", "says"),
    [
        (None, "issued", "W0001", False, "no acceptance-transfer act"),
        (None, "returned", "W0001", True, "no act recorded"),
        ("issue", "issued", "W0001", True, "out under act AT-2026-00001"),
        ("issue", "issued", "W0002", False, "the registry W0002"),
        ("issue", "returned", "W0001", False, "record the return act"),
        ("issue", "lost", "W0001", False, "reported lost"),
        ("issue", "revoked", "W0001", False, "record the return act"),
        ("return", "issued", "W0001", False, "sanaq-keys mark-returned TAB-0001"),
        ("return", "lost", "W0001", False, "sanaq-keys mark-returned TAB-0001"),
        ("return", "returned", "W0001", True, "returned under act"),
        ("return", "revoked", "W0001", True, "returned under act"),
        ("issue", None, "W0001", False, "not in the current registry snapshot"),
    ],
)
def test_acts_are_reconciled_with_the_registry(last_act, status, registry_worker, ok, says) -> None:
    acts = {} if last_act is None else {"TAB-0001": act(last_act)}
    (check,) = reconcile(acts, Snap(status, registry_worker))  # type: ignore[arg-type]
    assert check.ok is ok
    assert says in check.message


@pytest.fixture
async def gw(world: World, tmp_path: Path, staff_database: str) -> AsyncIterator[StaffGateway]:
    world.status["TAB-0003"] = "lost"
    gateway = await start_staff_gateway(world, tmp_path, database=staff_database)
    yield gateway
    await gateway.stop()


@pytest.fixture
async def admin(gw: StaffGateway) -> AsyncIterator[StaffClient]:
    async with signed_in(gw, "admin") as c:
        yield c


async def record(client: StaffClient, form: dict[str, str]) -> tuple[int, str, str]:
    status, html, resp = await client.post("/staff/acts", form | {"csrf": client.csrf})
    return status, html, resp.headers.get("Location", "")


async def test_issue_act_is_numbered_printable_and_has_a_pdf(gw: StaffGateway, admin) -> None:
    status, _, location = await record(admin, ISSUE)
    assert status == 303
    act_no = location.rsplit("/", 1)[1]
    assert re.fullmatch(r"AT-20\d\d-00001", act_no)
    status, html, _ = await admin.get(location)
    assert status == 200
    # the act is official paper: Kazakh and Russian whatever the page language; charger and cable, no case
    accessories = "зарядтау құрылғысы, USB шнуры / зарядное устройство, USB-кабель"
    for text in (act_no, WORKER, STAFF, "AB-000001", "W0001", "SERTAB-0001", accessories, "стилус"):
        assert text in html
    assert "чехол" not in html
    assert 'id="print-act"' in html and "@media print" not in html  # the print rules live in the stylesheet
    assert "out under act" in html
    status, css, _ = await admin.get("/staff/static/staff.css")
    assert status == 200 and "@media print" in css

    async with admin.session.get(f"{gw.url}{location}/pdf") as resp:
        assert resp.status == 200 and resp.content_type == "application/pdf"
        pdf = await resp.read()
    assert pdf.startswith(b"%PDF-")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert f"№ {act_no} қабылдау-беру актісі" in text and f"Акт приёма-передачи № {act_no}" in text  # noqa: RUF001
    assert WORKER in text and STAFF in text
    (Path("/tmp") / "staff-act.pdf").write_bytes(pdf)


async def test_return_act_until_the_registry_is_updated_says_what_to_run(world: World, gw, admin) -> None:
    assert (await record(admin, ISSUE))[0] == 303
    later = {"kind": "return", "device_id": "TAB-0001", "worker_name": WORKER, "staff_name": STAFF}
    status, _, location = await record(admin, later)
    assert status == 303 and location.endswith("-00002")
    _, html, _ = await admin.get(location)
    assert "sanaq-keys mark-returned TAB-0001" in html
    _, acts_html, _ = await admin.get("/staff/acts")
    assert 'class="warn" id="check-TAB-0001"' in acts_html
    world.status["TAB-0001"] = "returned"
    async with aiohttp.ClientSession() as s:
        headers = {"Content-Type": "application/vnd.sanaq.snapshot"}
        async with s.put(f"{gw.url}/v1/registry", data=world.snapshot(), headers=headers) as resp:
            assert resp.status == 200
    _, html, _ = await admin.get(location)
    assert "returned under act" in html and "mark-returned" not in html


@pytest.mark.parametrize(
    ("case", "before", "form", "says"),
    [
        ("return without issue", None, {"kind": "return"}, "no open issue act"),
        ("second issue", ISSUE, {}, "record its return first"),
        ("unknown tablet", None, {"device_id": "TAB-9999"}, "not in registry snapshot"),
        ("tablet not issued", None, {"device_id": "TAB-0003"}, "has TAB-0003 as lost"),
        ("other worker", None, {"worker_id": "W0009"}, "binds TAB-0001 to worker W0001"),
        ("other institution", None, {"institution": "ZZ-999999"}, "to institution AB-000001"),
        ("dated in the future", None, {"acted_at": "2999-01-01T10:00"}, "future"),
        ("not a date", None, {"acted_at": "tomorrow"}, "acted_at"),
        ("digits in a name", None, {"worker_name": "R2-D2"}, "worker_name"),
        ("no staff name", None, {"staff_name": " "}, "staff_name"),
        ("bad kind", None, {"kind": "lend"}, "kind"),
        ("return dated before the issue", ISSUE, {"kind": "return", "acted_at": local_minutes_ago(2 * 1440)}, "after"),
    ],
)
async def test_contradictory_acts_are_refused(gw: StaffGateway, admin, case, before, form, says) -> None:
    if before is not None:
        assert (await record(admin, before))[0] == 303
    count = gw.staff_rows("SELECT count(*) FROM acts")
    status, html, _ = await record(admin, ISSUE | form)
    assert status == 400, case
    assert says in re.search(r'<p class="error" id="act-error">([^<]*)</p>', html).group(1)  # type: ignore[union-attr]
    assert gw.staff_rows("SELECT count(*) FROM acts") == count
    assert WORKER in html or form.get("worker_name") in html  # the form keeps what was typed


async def test_viewers_see_acts_but_get_no_form(gw: StaffGateway, admin) -> None:
    assert (await record(admin, ISSUE))[0] == 303
    viewer = StaffClient(gw)
    try:
        assert await viewer.login("viewer") == 303
        status, html, _ = await viewer.get("/staff/acts")
        assert status == 200 and 'id="act-form"' not in html and WORKER in html
    finally:
        await viewer.close()
    assert gw.staff_rows("SELECT action FROM audit WHERE action = 'act.recorded'") == [("act.recorded",)]


def window_edges() -> tuple[str, str]:
    """The first local minute the test configuration's acts window allows, and the minute before it."""
    config = staff_config()
    zone = timezone(timedelta(minutes=config.utc_offset_minutes))
    first = datetime.fromtimestamp(config.acts_window_ms()[0] / 1000, zone)
    if first.second or first.microsecond:
        first = first.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return first.strftime("%Y-%m-%dT%H:%M"), (first - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize("staff_database", ["sqlite"], indirect=True)  # form validation: one engine
@pytest.mark.parametrize(
    ("case", "acted_at", "status", "says"),
    [
        ("year 1, hour 4:59 (overflowed the conversion)", "0001-01-01T04:59", 400, "outside the period"),
        ("year 1, hour 5:00 (was accepted)", "0001-01-01T05:00", 400, "outside the period"),
        ("the founding order's census period, years before the configured one", "2020-10-15T10:00", 400, "outside"),
        ("one minute before the window opens", "BEFORE", 400, "outside the period"),
        ("the first minute of the window", "FIRST", 303, None),
        ("year 9999", "9999-12-31T23:59", 400, "future"),
        ("30 February", "2026-02-30T10:00", 400, "not a valid date"),
        ("seconds given", "2026-02-03T10:00:00", 400, "YYYY-MM-DDTHH:MM"),
    ],
)
async def test_act_dates_are_bounded_by_the_census_dates(gw: StaffGateway, admin, case, acted_at, status, says) -> None:
    """Finding 9: bad dates are a 400 with a reason, never a 500, and acts cannot be back-dated without bound."""
    first, before = window_edges()
    when = {"FIRST": first, "BEFORE": before}.get(acted_at, acted_at)
    got, html, _ = await record(admin, ISSUE | {"acted_at": when})
    assert got == status, (case, html[-400:])
    if says is not None:
        error = re.search(r'<p class="error" id="act-error">([^<]*)</p>', html)
        assert error and "acted_at" in error.group(1) and says in error.group(1), case
    assert gw.staff_rows("SELECT count(*) FROM acts") == [(1 if status == 303 else 0,)]


def test_the_acts_window_follows_the_configured_census_dates() -> None:
    founding = StaffConfig()  # defaults: the founding order (moment 00:00 Astana time, UTC+06:00 in 2020)
    first, last = founding.acts_window_ms()
    moment_ms = int(datetime(2020, 9, 30, 18, 0, tzinfo=UTC).timestamp() * 1000)
    assert first == moment_ms - 92 * 86_400_000
    end_ms = int(datetime(2020, 10, 31, 0, 0, tzinfo=timezone(timedelta(hours=5))).timestamp() * 1000)
    assert last == end_ms + 92 * 86_400_000 - 1
    moved = StaffConfig(**census_around(moment_ms + 400 * 86_400_000), acts_days_before=0, acts_days_after=0)
    assert moved.acts_window_ms()[0] > last


@pytest.mark.parametrize(
    ("case", "options", "says"),
    [
        ("moment without offset", {"census_moment": "2020-10-01T00:00"}, "UTC offset"),
        ("moment not a date", {"census_moment": "soon"}, "census_moment"),
        ("period end before start", {"census_period_end": "2020-09-01"}, "must not be after"),
        ("period start not a date", {"census_period_start": "2020-10-32"}, "census_period_start"),
        ("negative days", {"acts_days_before": -1}, "acts_days_before"),
    ],
)
def test_bad_census_dates_are_refused_at_start(case, options, says) -> None:
    from gateway.staff import StaffConfigError

    with pytest.raises(StaffConfigError, match=says):
        StaffConfig(**options)


async def test_a_multipart_act_form_is_a_400_with_a_reason(gw: StaffGateway, admin) -> None:
    """Finding 9: a multipart POST used to hit an ``assert`` (500, or silently past it under -O)."""
    form = aiohttp.FormData()
    form.add_field("csrf", admin.csrf)
    for name, value in ISSUE.items():
        form.add_field(name, value)
    form.add_field("file", b"x", filename="x.bin")  # force multipart/form-data
    status, html, _ = await admin.post("/staff/acts", form)
    assert status == 400 and "application/x-www-form-urlencoded" in html
    assert gw.staff_rows("SELECT count(*) FROM acts") == [(0,)]


@pytest.mark.parametrize("staff_database", ["sqlite"], indirect=True)  # form validation: one engine
@pytest.mark.parametrize(
    ("case", "content_type", "body"),
    [
        ("multipart without a boundary", "multipart/form-data", b"--x\r\n"),
        (
            "multipart with a broken part",
            "multipart/form-data; boundary=zz",
            b"--zz\r\nContent-Disposition: nonsense\r\n",
        ),
        (
            "multipart cut short",
            "multipart/form-data; boundary=zz",
            b"--zz\r\nContent-Disposition: form-data; name=csrf\r\n\r\nab",
        ),
        ("urlencoded garbage", "application/x-www-form-urlencoded", b"%%%=&&=%zz"),
        ("json", "application/json", b'{"csrf": "x"}'),
    ],
)
@pytest.mark.parametrize("path", ["/staff/acts", "/staff/lists", "/staff/login"])
async def test_malformed_form_bodies_are_refused_not_crashed(gw: StaffGateway, admin, case, content_type, body, path):
    headers = {"Content-Type": content_type}
    status, _, _ = await admin.post(path, body, headers=headers)
    assert 400 <= status < 500, (case, path, status)
    assert gw.staff_rows("SELECT count(*) FROM acts") == [(0,)]
