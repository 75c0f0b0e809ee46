"""Acceptance-transfer acts: recorded by admins, checked against the registry, printable as HTML and PDF."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pypdf import PdfReader

from gateway.staff.acts import Act, reconcile
from wire import TabletEntry

from .harness import World
from .staff_browser import StaffClient, StaffGateway, start_staff_gateway

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
async def gw(world: World, tmp_path: Path) -> AsyncIterator[StaffGateway]:
    world.status["TAB-0003"] = "lost"
    gateway = await start_staff_gateway(world, tmp_path)
    yield gateway
    await gateway.stop()


@pytest.fixture
async def admin(gw: StaffGateway) -> AsyncIterator[StaffClient]:
    c = StaffClient(gw)
    assert await c.login("admin") == 303
    yield c
    await c.close()


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
    for text in (act_no, WORKER, STAFF, "AB-000001", "W0001", "SERTAB-0001", "charger: yes", "case: no", "стилус"):
        assert text in html
    assert 'id="print-act"' in html and "@media print" not in html  # the print rules live in the stylesheet
    assert "out under act" in html
    status, css, _ = await admin.get("/staff/static/staff.css")
    assert status == 200 and "@media print" in css

    async with admin.session.get(f"{gw.url}{location}/pdf") as resp:
        assert resp.status == 200 and resp.content_type == "application/pdf"
        pdf = await resp.read()
    assert pdf.startswith(b"%PDF-")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert f"Acceptance-transfer act No. {act_no}" in text
    assert "Акт приёма-передачи" in text and WORKER in text and STAFF in text
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
        ("return dated before the issue", ISSUE, {"kind": "return", "acted_at": "2020-01-01T10:00"}, "dated after"),
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
