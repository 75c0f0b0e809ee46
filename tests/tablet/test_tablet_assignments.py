"""One count, end to end over real HTTP with the real CLI: a respondent answers online (road web:<id>); the
tablet's assignments then show the entry as enumerated online; `fill --entry` warns and refuses, `--anyway`
interviews; the second sheet is stored and lands in the review queue; coverage counts one person for the
entry; an administrator resolves the case in the dashboard."""

from __future__ import annotations

import json
import os
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gwclient import SignedGatewayClient
from keys import Authority, tls
from keys.enrollment import enroll_web
from tablet.generator import sheet_for_entry
from tests.gateway.harness import now_ms
from tests.gateway.staff_browser import StaffClient, add_staff_user, list_csv, staff_config, surname, upload
from wire import seal_batch

from .test_tablet_sync_bed import GatewayBed, enroll, push_registry
from .test_tablet_sync_cli import cli

DEVICE = "tab-count-01"
WEB_ID = "WEB-AST-01"
CODE = "BL-000042"  # the institution `enroll` gives the tablet


@dataclass
class Setup:
    authority: Authority
    bed: GatewayBed
    home: Path
    admin: StaffClient
    web_bundle: object
    tls: ssl.SSLContext


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    authority = Authority.create(tmp_path / "authority", now_ms=now_ms())
    bed = GatewayBed.of_authority(authority, tmp_path / "census.db")
    bed.staff = staff_config()
    add_staff_user(tmp_path / "staff.db", "admin", "admin")
    await bed.start()
    bundle = enroll(authority, tmp_path / "bundle", DEVICE, bed.url)
    web = enroll_web(authority, tmp_path / "bundle-web", web_id=WEB_ID, gateway_url=bed.url, now_ms=now_ms())
    await push_registry(authority, bed)
    home = tmp_path / "home"
    code, _, err = await cli(home, "init", "--bundle", str(bundle))
    assert code == 0, err
    admin = StaffClient(bed, tls=tls.client_ssl_context(authority.ca_cert_path))  # type: ignore[arg-type]
    assert await admin.login("admin") == 303
    yield Setup(authority, bed, home, admin, web, tls.client_ssl_context(authority.ca_cert_path))
    await admin.close()
    await bed.stop()
    authority.close()


async def summary(admin: StaffClient) -> dict:
    async with admin.session.get(admin.gw.url + "/staff/api/summary") as r:
        assert r.status == 200
        return await r.json()


def listed(n: int) -> dict[str, str]:
    return {
        "entry_id": f"{CODE}/{n:05d}",
        "surname": surname(n),
        "given_name": "Арман",
        "patronymic": "Серикович",
        "birth_date": f"1980-01-{n % 28 + 1:02d}",
    }


async def test_online_then_tablet_interview_counts_one_person_and_staff_resolve_it(setup: Setup) -> None:
    assert (await upload(setup.admin, list_csv(CODE, range(1, 4))))[0] == 200

    web = setup.web_bundle
    sheet = sheet_for_entry(listed(1), institution=CODE, device_id=WEB_ID, seed=1, filled_at_ms=now_ms())
    envelope = seal_batch(
        device_id=WEB_ID,
        seq=1,
        sheets=[sheet],
        sealed_at_ms=now_ms(),
        device_key=web.signing_key,
        data_public_key=web.data_public_key,  # type: ignore[attr-defined]
        ephemeral_secret=os.urandom(32),
    )
    async with SignedGatewayClient(setup.bed.url, web.signing_key, ssl_context=setup.tls) as client:  # type: ignore[attr-defined]
        assert (await client.post_batch(envelope)).road == f"web:{WEB_ID}"

    code, _, err = await cli(setup.home, "sync")  # nothing to send; fetches the assignments
    assert code == 0, err
    assert stat.S_IMODE((setup.home / "assignments.json").stat().st_mode) == 0o600  # it holds names
    code, out, err = await cli(setup.home, "--json", "list")
    assert code == 0, err
    held = json.loads(out)
    assert held["institution"] == CODE and held["version"] >= 1
    assert [(e["entry_id"], e["status"]) for e in held["entries"]] == [
        (f"{CODE}/00002", "open"),
        (f"{CODE}/00003", "open"),
    ]
    code, out, _ = await cli(setup.home, "list", "--all")
    assert "00001  enumerated online" in out and surname(1) in out

    code, _, err = await cli(setup.home, "fill", "--entry", "1")
    assert code == 2 and "already-enumerated" in err and "enumerated online" in err
    code, _, err = await cli(setup.home, "fill", "--entry", "9")
    assert code == 2 and "unknown-entry" in err
    code, out, err = await cli(setup.home, "--json", "fill", "--entry", "1", "--anyway")
    assert code == 0 and "interviewing anyway" in err
    assert json.loads(out)["status_before"] == "enumerated-online"
    code, _, err = await cli(setup.home, "fill", "--entry", "2")
    assert code == 0, err
    code, _, err = await cli(setup.home, "sync")
    assert code == 0, err

    answer = await summary(setup.admin)
    assert answer["sheets"] == 3  # the online sheet and both tablet sheets: nothing dropped
    assert answer["coverage"]["institutions"][CODE] == [2, 3]  # entry 1 counted once
    assert answer["coverage"]["persons"] == 2 and answer["coverage"]["review_open"] == 1
    code, out, _ = await cli(setup.home, "--json", "list", "--all")
    statuses = {e["entry_id"][-1]: e["status"] for e in json.loads(out)["entries"]}
    assert statuses == {"1": "enumerated-online", "2": "enumerated-here", "3": "open"}

    status, html, _ = await setup.admin.get("/staff/review/1")
    assert status == 200 and f"web:{WEB_ID}" in html and DEVICE in html and "same-entry" in html
    status, html, _ = await setup.admin.post("/staff/review/1", {"csrf": setup.admin.csrf, "decision": "keep-first"})
    assert status == 200 and "decided: keep-first" in html
    answer = await summary(setup.admin)
    assert answer["coverage"]["review_open"] == 0 and answer["coverage"]["persons"] == 2
