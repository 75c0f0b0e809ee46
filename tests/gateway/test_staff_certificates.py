"""Participation certificates from the staff dashboard, over real HTTP on a gateway that ingested real batches.

Sheets arrive by the online road and (one respondent twice) by a station; a
responsible worker prints the institution's certificates as one PDF: one page
per respondent, the earliest sheet's road, every QR code decoding to a
certificate that verifies under the census root key. Prints are audited;
without a certificate key the dashboard says so and issues nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from nacl.signing import SigningKey

from gateway.staff.web_certificates import CERTIFICATES
from keys.certificates import KEY_DOCUMENT, PRIVATE_KEY
from keys.files import save_signing_key
from tablet.generator import KindMix, generate_sheets, tablet_profile
from tests.pdf_tools import pdf_text, qr_texts
from wire.certificate import carrier_from_text, make_certificate_key, verify_certificate
from wire.snapshot import accept_snapshot, make_snapshot

from .harness import World, now_ms, post_batch
from .staff_browser import StaffClient, StaffGateway, signed_in, staff_config, start_staff_gateway

MIX = KindMix.only(hospital=1)


def _key_dir(world: World, path: Path) -> Path:
    key = SigningKey.generate()
    path.mkdir(mode=0o700)
    save_signing_key(path / PRIVATE_KEY, key)
    (path / KEY_DOCUMENT).write_bytes(make_certificate_key(
        census="KZ-2020", issuer="staff-ATY", public_key=bytes(key.verify_key), issued_at_ms=now_ms(),
        root_key=world.root))
    return path


@pytest.fixture
async def gw(world: World, tmp_path: Path) -> AsyncIterator[StaffGateway]:
    config = staff_config(certificate_key_dir=_key_dir(world, tmp_path / "cert-staff"),
                          certificate_verify_at="https://sanaq.example/certificate")
    gateway = await start_staff_gateway(world, tmp_path, staff=config)
    yield gateway
    await gateway.stop()


@pytest.fixture
async def viewer(gw: StaffGateway) -> AsyncIterator[StaffClient]:
    async with signed_in(gw, "viewer") as c:
        yield c


def _qr_texts(pdf: Path, out: Path) -> list[str]:
    return qr_texts(pdf, out)


async def test_a_worker_prints_the_institutions_certificates_in_one_pdf(
    world: World, gw: StaffGateway, viewer: StaffClient, tmp_path: Path
) -> None:
    code = tablet_profile(7, "TAB-0001", MIX).institutions["hospital"].code
    first = generate_sheets(7, 4, device_id="TAB-0001", mix=MIX)
    again = generate_sheets(7, 2, device_id="TAB-0001", mix=MIX, start=3)  # entry 4 again, and entry 5
    entries = [s["respondent_list_entry"] for s in first + again]
    assert entries[3] == entries[4] and len(set(entries)) == 5
    async with aiohttp.ClientSession() as s:
        assert (await post_batch(s, gw, world.batch("TAB-0001", 1, first), world.tablets["TAB-0001"]))[0] == 200
        carried = world.batch("TAB-0001", 2, again)
        assert (await post_batch(s, gw, carried, world.stations["ST-01"]))[0] == 200  # the USB road

    status, html, _ = await viewer.get("/staff/certificates")
    assert status == 200 and f"<td class=\"mono\">{code}</td><td class=\"num\">5</td>" in html
    async with viewer.session.get(f"{gw.url}/staff/certificates/{code}/pdf") as resp:
        assert resp.status == 200 and resp.content_type == "application/pdf"
        (tmp_path / "out.pdf").write_bytes(await resp.read())

    certs = [verify_certificate(carrier_from_text(t), bytes(world.root.verify_key))
             for t in _qr_texts(tmp_path / "out.pdf", tmp_path)]
    assert [c.subject for c in certs] == [f"entry:{e}" for e in dict.fromkeys(entries)]  # once each, in order
    assert [c.road for c in certs] == ["tablet"] * 4 + ["usb"]  # entry 4's first sheet came online
    assert {c.census for c in certs} == {"KZ-2020"} and {c.key.issuer for c in certs} == {"staff-ATY"}
    layer = pdf_text(tmp_path / "out.pdf")
    assert layer.count("Халық санағынан өту туралы анықтама") == 5
    assert layer.count("https://sanaq.example/certificate") == 10  # where to check, in Kazakh and in Russian
    assert all(p["surname"] not in layer for sheet in first for p in sheet["persons"])  # no name on a certificate
    audit = gw.staff_rows("SELECT detail FROM audit WHERE action = 'certificates.printed'")
    assert [json.loads(d) for (d,) in audit] == [{"count": 5, "scope": code, "skipped": 0}]


async def test_a_household_respondent_by_sheet_number(
    world: World, gw: StaffGateway, viewer: StaffClient, tmp_path: Path
) -> None:
    [household] = generate_sheets(9, 1, device_id="TAB-0002", mix=KindMix.only(household=1))
    async with aiohttp.ClientSession() as s:
        assert (await post_batch(s, gw, world.batch("TAB-0002", 1, [household]), world.tablets["TAB-0002"]))[0] == 200
    sheet_id = household["sheet_id"]
    async with viewer.session.get(f"{gw.url}/staff/certificates/sheet", params={"id": sheet_id.upper()}) as resp:
        assert resp.status == 200 and resp.content_type == "application/pdf"
        (tmp_path / "one.pdf").write_bytes(await resp.read())
    [text] = _qr_texts(tmp_path / "one.pdf", tmp_path)
    cert = verify_certificate(carrier_from_text(text), bytes(world.root.verify_key))
    assert (cert.subject, cert.road) == (f"sheet:{sheet_id}", "tablet")
    for bad, status in (("not-a-uuid", 400), ("0f8fad5b-d9cb-469f-a165-70867728950e", 404)):
        got, _, _ = await viewer.get(f"/staff/certificates/sheet?id={bad}")
        assert got == status


async def test_a_revoked_certificate_key_prints_nothing(
    world: World, gw: StaffGateway, viewer: StaffClient
) -> None:
    [household] = generate_sheets(9, 1, device_id="TAB-0002", mix=KindMix.only(household=1))
    held = accept_snapshot(world.snapshot(), bytes(world.root.verify_key), now_ms=now_ms())
    issuer_key = gw.app[CERTIFICATES].issuer.key.key_id
    revoking = make_snapshot(
        version=held.version + 1, issued_at_ms=now_ms(), expires_at_ms=now_ms() + 86_400_000,
        data_public_key=held.data_key.public_key, gateway_public_keys=[k.public_key for k in held.gateway_keys],
        tablets=list(held.tablets), stations=list(held.stations), root_key=world.root,
        revoked_certificate_keys=[issuer_key])
    async with aiohttp.ClientSession() as s:
        assert (await post_batch(s, gw, world.batch("TAB-0002", 1, [household]), world.tablets["TAB-0002"]))[0] == 200
        async with s.put(f"{gw.url}/v1/registry", data=revoking,
                         headers={"Content-Type": "application/vnd.sanaq.snapshot"}) as resp:
            assert resp.status == 200
    status, html, _ = await viewer.get(f"/staff/certificates/sheet?id={household['sheet_id']}")
    assert status == 503 and "revoked this gateway&#39;s certificate key" in html
    assert gw.staff_rows("SELECT count(*) FROM audit WHERE action = 'certificates.printed'") == [(0,)]


async def test_refusals(world: World, gw: StaffGateway, viewer: StaffClient) -> None:
    status, html, _ = await viewer.get("/staff/certificates/ZZ-999999/pdf")
    assert status == 404 and "No sheet of institution ZZ-999999" in html
    status, _, _ = await viewer.get("/staff/certificates/..%2Fetc/pdf")
    assert status == 404
    async with aiohttp.ClientSession() as anonymous, anonymous.get(
            f"{gw.url}/staff/certificates/ZZ-999999/pdf", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/staff/login"


async def test_without_a_certificate_key_nothing_is_issued(world: World, tmp_path: Path) -> None:
    gateway = await start_staff_gateway(world, tmp_path, staff=staff_config())
    c = StaffClient(gateway)
    try:
        assert await c.login("viewer") == 303
        status, html, _ = await c.get("/staff/certificates")
        assert status == 200 and 'id="certificates-unavailable"' in html
        status, html, _ = await c.get("/staff/certificates/AB-000001/pdf")
        assert status == 503 and "certificate_key_dir" in html
    finally:
        await c.close()
        await gateway.stop()
