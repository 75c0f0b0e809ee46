"""GET /v1/devices/{id}/assignments over real HTTP: the signed, versioned list of the tablet's institution's
entries with their status; deltas since a version; only the tablet's own institution; a revoked tablet and
another device get nothing."""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from tablet.generator import KindMix, generate_sheets
from wire import parse_assignments
from wire.errors import WireError

from .harness import World, now_ms, post_batch, seed, sign
from .staff_browser import StaffClient, StaffGateway, list_csv, signed_in, start_staff_gateway, upload

WEB_ID = "WEB-AST-01"
CODE = "AB-000001"
OTHER = "CD-000002"


@pytest.fixture
def world() -> World:
    w = World.make(n_tablets=3)
    w.webs[WEB_ID] = SigningKey(seed("web-1"))
    w.institutions["TAB-0003"] = OTHER
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


def sheet_for(code: str, number: int, *, n: int = 0) -> dict[str, Any]:
    """A valid institution sheet (from the generator) moved to ``code``'s entry ``number``."""
    sheet = copy.deepcopy(generate_sheets(7, 1, device_id="TAB-0001", mix=KindMix.only(hospital=1), start=n)[0])
    sheet["sheet_id"] = str(uuid.uuid4())
    sheet["institution_code"] = code
    sheet["respondent_list_entry"] = f"{code}/{number:05d}"
    return sheet


async def fetch(
    world: World, gw: StaffGateway, device: str, since: int | None = None, *, as_device: str | None = None
) -> tuple[int, dict[str, Any]]:
    url = f"{gw.url}/v1/devices/{device}/assignments"
    query = "" if since is None else f"since={since}"
    headers = sign("GET", url, world.tablets[as_device or device], query=query)
    async with aiohttp.ClientSession() as s, s.get(url + ("?" + query if query else ""), headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def statuses(answer: dict[str, Any], world: World) -> tuple[Any, dict[str, tuple[str, int | None]]]:
    doc = parse_assignments(base64.b64decode(answer["assignments"]), world.gateway_keys)
    assert (doc.version, doc.since, len(doc.entries)) == (answer["version"], answer["since"], answer["entries"])
    return doc, {e.entry_id[-5:]: (e.status, e.enumerated_at_ms) for e in doc.entries}


async def test_statuses_versions_and_deltas(world: World, gw: StaffGateway, admin: StaffClient) -> None:
    both = list_csv(CODE, range(1, 5)) + list_csv(OTHER, range(1, 3)).split(b"\n", 1)[1]
    assert (await upload(admin, both))[0] == 200
    status, answer = await fetch(world, gw, "TAB-0001")
    assert status == 200, answer
    doc, got = statuses(answer, world)
    assert (doc.device_id, doc.institution, doc.since, doc.version) == ("TAB-0001", CODE, 0, 1)
    assert got == {f"{n:05d}": ("open", None) for n in range(1, 5)}
    assert doc.entries[0].surname and doc.entries[0].birth_date  # the worker sees whom to interview

    async with aiohttp.ClientSession() as s:
        web_batch = world.batch(WEB_ID, 1, [sheet_for(CODE, 1)])
        assert (await post_batch(s, gw, web_batch, world.webs[WEB_ID]))[0] == 200
        tablet_batch = world.batch("TAB-0001", 1, [sheet_for(CODE, 2, n=1)])
        assert (await post_batch(s, gw, tablet_batch, world.tablets["TAB-0001"]))[0] == 200
        bad = sheet_for(CODE, 3, n=2)
        bad["persons"][0]["birth_date"] = "2030-01-01"  # quarantined: entry 3 needs a revisit
        assert (await post_batch(s, gw, world.batch("TAB-0002", 1, [bad]), world.tablets["TAB-0002"]))[0] == 200

    status, answer = await fetch(world, gw, "TAB-0001", since=1)
    doc, got = statuses(answer, world)
    assert (doc.since, doc.version) == (1, 2)
    assert set(got) == {"00001", "00002", "00003"}  # entry 4 did not change
    assert got["00001"][0] == "enumerated-online" and got["00001"][1] is not None
    assert got["00002"][0] == "enumerated-here" and got["00003"] == ("needs-revisit", None)
    _, other_view = statuses((await fetch(world, gw, "TAB-0002"))[1], world)
    assert other_view["00002"][0] == "enumerated-elsewhere" and other_view["00004"] == ("open", None)

    status, answer = await fetch(world, gw, "TAB-0001", since=2)
    doc, got = statuses(answer, world)
    assert (doc.since, doc.version, got) == (2, 2, {})  # nothing changed: the version stays

    assert (await upload(admin, list_csv(CODE, range(2, 6), list_date="2026-09-25")))[0] == 200
    doc, got = statuses((await fetch(world, gw, "TAB-0001", since=2))[1], world)
    assert doc.version == 3 and got == {"00001": ("withdrawn", None), "00005": ("open", None)}
    doc, got = statuses((await fetch(world, gw, "TAB-0001", since=99))[1], world)  # never issued: whole list
    assert doc.since == 0 and sorted(got) == ["00002", "00003", "00004", "00005"]

    _, got = statuses((await fetch(world, gw, "TAB-0003"))[1], world)
    assert sorted(got) == ["00001", "00002"]  # only its own institution's list
    doc, _ = statuses((await fetch(world, gw, "TAB-0003"))[1], world)
    assert doc.institution == OTHER


async def test_refusals(world: World, gw: StaffGateway, admin: StaffClient) -> None:
    assert (await upload(admin, list_csv(CODE, range(1, 3))))[0] == 200
    status, answer = await fetch(world, gw, "TAB-0002", as_device="TAB-0001")
    assert (status, answer["code"]) == (403, "forbidden")
    for bad in ("-1", "abc", "1.5", "99999999999999999999", "1&since=2"):
        url = f"{gw.url}/v1/devices/TAB-0001/assignments"
        headers = sign("GET", url, world.tablets["TAB-0001"], query=f"since={bad}")
        async with aiohttp.ClientSession() as s, s.get(f"{url}?since={bad}", headers=headers) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == "malformed", bad
    url = f"{gw.url}/v1/devices/TAB-0001/assignments"
    unsigned_query = sign("GET", url, world.tablets["TAB-0001"])  # the query is not covered: refused
    async with aiohttp.ClientSession() as s, s.get(f"{url}?since=1", headers=unsigned_query) as resp:
        assert (resp.status, (await resp.json())["code"]) == (401, "bad-signature-input")
    world.status["TAB-0002"] = "revoked"
    async with (
        aiohttp.ClientSession() as s,
        s.put(
            f"{gw.url}/v1/registry",
            data=world.snapshot(now=now_ms()),
            headers={"Content-Type": "application/vnd.sanaq.snapshot"},
        ) as resp,
    ):
        assert resp.status == 200
    status, answer = await fetch(world, gw, "TAB-0002")
    assert (status, answer["code"]) == (403, "revoked") and "assignments" not in answer


def test_tampered_or_foreign_documents_are_refused(world: World) -> None:
    from wire import Assignment, make_assignments

    entry = Assignment(f"{CODE}/00001", "open", None, "A", "B", "", "1950-01-01", 1)
    doc = make_assignments(
        device_id="TAB-0001",
        institution=CODE,
        issued_at_ms=1,
        version=1,
        since=0,
        entries=[entry],
        gateway_key=world.receipt,
    )
    assert parse_assignments(doc, world.gateway_keys).entries == (entry,)
    tampered = doc.replace(b'"open"', b'"OPEN"')
    with pytest.raises(WireError):
        parse_assignments(tampered, world.gateway_keys)
    foreign = make_assignments(
        device_id="TAB-0001",
        institution=CODE,
        issued_at_ms=1,
        version=1,
        since=0,
        entries=[entry],
        gateway_key=SigningKey(seed("not-a-gateway")),
    )
    with pytest.raises(WireError):
        parse_assignments(foreign, world.gateway_keys)
    wrong_institution = Assignment(f"{OTHER}/00001", "open", None, "A", "B", "", "1950-01-01", 1)
    odd = make_assignments(
        device_id="TAB-0001",
        institution=CODE,
        issued_at_ms=1,
        version=1,
        since=0,
        entries=[wrong_institution],
        gateway_key=world.receipt,
    )
    with pytest.raises(WireError):
        parse_assignments(odd, world.gateway_keys)


async def test_a_tablet_of_an_institution_without_a_list_code_gets_an_empty_list(
    world: World, tmp_path: Path
) -> None:
    world.institutions["TAB-0002"] = "Областная больница №2"  # the registry allows any text
    gateway = await start_staff_gateway(world, tmp_path)
    try:
        status, answer = await fetch(world, gateway, "TAB-0002")
        assert status == 200, answer
        doc, got = statuses(answer, world)
        assert (doc.institution, doc.version, doc.since, got) == ("Областная больница №2", 0, 0, {})
    finally:
        await gateway.stop()


async def test_a_staff_database_failure_is_unavailable_not_internal(
    world: World, gw: StaffGateway, admin: StaffClient
) -> None:
    from gateway.staff.state import STAFF

    assert (await upload(admin, list_csv(CODE, range(1, 3))))[0] == 200
    await gw.app[STAFF].db.close()  # staff.db gone (disk, file): tablets are told to come back later
    status, answer = await fetch(world, gw, "TAB-0001")
    assert (status, answer["code"]) == (503, "unavailable") and "assignments" not in answer
