
"""Access codes from the staff dashboard to the web service, over real HTTP on loopback.

A real gateway with the staff dashboard mounted (``build_server``), the real
web service polling ``GET /v1/web/access-codes/since/N``: a responsible worker
mints codes and gets the slips PDF, the respondent signs in with a printed
code; revoke and re-issue take effect on the site; a resident missing from
the list is registered on the spot (entry 90001, an addition in coverage).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pypdf import PdfReader

from gateway._schema_postgres import migrate
from gateway.config import GatewayConfig, ServerConfig
from gateway.server import build_server
from gateway.staff import StaffConfig
from gateway.staff.codes import load_pepper
from gateway.store import CensusStore
from gateway.store_postgres import PostgresStore
from gateway.store_sqlite import SqliteStore
from gwclient import GatewayRefused, SignedGatewayClient
from keys.access_codes import normalise_code, pepper_id
from tests.gateway.pg_cluster import create_database, drop_database, pg_cluster  # noqa: F401 - fixture
from tests.gateway.staff_browser import StaffClient, StaffGateway, add_staff_user, census_around
from wire import parse_access_codes

from .bed import INSTITUTION, LIST_CSV, Env, Web, now_ms, selfenum_config, serve_selfenum

OTHER = "CD-000002"
DASH_LIST = LIST_CSV + f"{OTHER},1,2026-06-01,Ким,Ли,,1980-02-02\n"
KIND = {"institution_kind": "childrens_home", "worker_id": "W-17"}


async def serve_staff_gateway(env: Env, tmp_path: Path, *, staff: bool = True, dsn: str | None = None
                              ) -> StaffGateway:
    """The gateway with its dashboard on SQLite, or (``dsn``) on PostgreSQL with the pepper beside ``tmp_path``."""
    db_path = tmp_path / "census.db"
    staff_config = StaffConfig(refresh_interval_s=0.1, full_refresh_s=5.0, heartbeat_s=1.0, language="en",
                               **census_around(now_ms()))
    store: CensusStore
    users_at: Path | str
    if dsn is None:
        database, store = f"sqlite:///{db_path}", SqliteStore(db_path)
        staff_db = users_at = staff_config.staff_db(db_path)
    else:
        await migrate(dsn)
        load_pepper(tmp_path / "codes.pepper")  # made once; every instance is given the same file
        staff_config = dataclasses.replace(staff_config, codes_pepper_file=tmp_path / "codes.pepper")
        database, store, users_at, staff_db = dsn, PostgresStore(dsn, max_wait_ms=0.5), dsn, tmp_path / "staff.db"
    if staff:
        add_staff_user(users_at, "admin", "admin")
        add_staff_user(users_at, "worker", "viewer")
        add_staff_user(users_at, "stranger", "viewer")
    a = env.authority
    config = GatewayConfig(database=database,
                           server=ServerConfig(plain_http=True, port=0, shutdown_timeout_s=5),
                           staff=staff_config if staff else StaffConfig(enabled=False))
    server = build_server(config, store, data_key=a.data_private_key(),
                          receipt_key=a.gateway_signing_key(), root_public_key=a.root_public_key,
                          bootstrap_snapshot=a.latest_snapshot())
    await server.start()
    return StaffGateway(f"http://127.0.0.1:{server.addresses[0][1]}", server.runner, server.app, db_path, staff_db,
                        database)


@pytest.fixture
async def sgw(env: Env, tmp_path: Path) -> AsyncIterator[StaffGateway]:
    g = await serve_staff_gateway(env, tmp_path)
    from gateway.staff.__main__ import main as staff_cli

    assert staff_cli(["set-institutions", "--db", str(g.staff_db), "--username", "worker", INSTITUTION]) == 0
    yield g
    await g.stop()


@pytest.fixture
async def staff(sgw: StaffGateway) -> AsyncIterator[dict[str, StaffClient]]:
    clients = {name: StaffClient(sgw) for name in ("admin", "worker", "stranger")}
    for name, c in clients.items():
        assert await c.login(name) == 303
    form = aiohttp.FormData()
    form.add_field("csrf", clients["admin"].csrf)
    form.add_field("file", DASH_LIST.encode(), filename="list.csv", content_type="text/csv")
    status, _, _ = await clients["admin"].post("/staff/lists", form)
    assert status == 200
    yield clients
    for c in clients.values():
        await c.close()


@pytest.fixture
async def site(env: Env, sgw: StaffGateway, tmp_path: Path) -> AsyncIterator[Web]:
    """The web service, given the dashboard's pepper (it never makes one at ``codes_pepper_file``)."""
    from gateway.staff.codes import load_pepper

    pepper = sgw.staff_db.parent / "codes.pepper"
    load_pepper(pepper)  # as the dashboard does on its first mint
    config = dataclasses.replace(selfenum_config(env, tmp_path / "selfenum", sgw.url), codes_pepper_file=pepper)
    w = await serve_selfenum(config)
    yield w
    await w.stop()


async def post_pdf(client: StaffClient, path: str, data: dict[str, str]) -> tuple[int, bytes, str]:
    headers = {"Origin": client.gw.url}
    async with client.session.post(client.gw.url + path, data={"csrf": client.csrf, **data}, headers=headers,
                                   allow_redirects=False) as r:
        if r.content_type == "application/pdf":  # live codes: never cached anywhere
            assert r.headers["Cache-Control"] == "no-store" and r.headers["Content-Disposition"].startswith(
                "attachment;")
        return r.status, await r.read(), r.headers.get("Content-Type", "")


def codes_in(pdf: bytes) -> dict[str, str]:
    """{entry_id: code} printed on the slips."""
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    out: dict[str, str] = {}
    entry = None
    for word in text.split():
        if word.count("/") == 1 and word.split("/")[0].count("-") == 1 and len(word) == 15:
            entry = word
        elif len(word) == 24 and word.count("-") == 4 and entry is not None:
            out[entry] = normalise_code(word)
            entry = None
    return out


async def poll(w: Web) -> None:
    from selfenum.app import APP

    codes = w.app[APP].codes
    assert codes is not None
    assert await codes.poll()


async def signs_in(w: Web, code: str) -> bool:
    from .browserless import Respondent

    r = Respondent(w.url)
    try:
        status, _, path = await r.sign_in(code)
        return (status, path) == (200, "/q/name")
    finally:
        await r.close()


E1, E2, E3 = (f"{INSTITUTION}/{i:05d}" for i in (1, 2, 3))


async def test_a_responsible_worker_mints_codes_the_site_learns_them_revoke_and_reissue_take_effect(
        sgw: StaffGateway, staff: dict[str, StaffClient], site: Web) -> None:
    worker = staff["worker"]
    status, page, _ = await worker.get("/staff/codes")
    assert status == 200 and INSTITUTION in page and OTHER not in page  # only the worker's institution
    status, pdf, ctype = await post_pdf(worker, f"/staff/codes/{INSTITUTION}/mint", KIND)
    assert status == 200 and ctype == "application/pdf"
    printed = codes_in(pdf)
    assert set(printed) == {E1, E2, E3}
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "Жұмабаева" in text and "Перепись населения онлайн" in text
    # stored only as keyed hashes: no code in staff.db, nor in the pepper's directory files
    raw = sgw.staff_db.read_bytes() + (sgw.staff_db.parent / "staff.db-wal").read_bytes()
    assert not any(c.encode() in raw for c in printed.values())
    assert stat.S_IMODE((sgw.staff_db.parent / "codes.pepper").stat().st_mode) == 0o600
    # a second mint makes nothing new: every entry has its code
    status, pdf2, _ = await post_pdf(worker, f"/staff/codes/{INSTITUTION}/mint", KIND)
    assert status == 400 and b"already has an active code" in pdf2

    await poll(site)
    assert await signs_in(site, printed[E1])

    status, _, _ = await worker.post(f"/staff/codes/{INSTITUTION}/revoke", {"csrf": worker.csrf, "entry_id": E2})
    assert status == 303
    status, pdf3, _ = await post_pdf(worker, f"/staff/codes/{INSTITUTION}/reissue", {"entry_id": E3, **KIND})
    assert status == 200
    new3 = codes_in(pdf3)[E3]
    assert new3 != printed[E3]
    await poll(site)
    assert not await signs_in(site, printed[E2])
    assert not await signs_in(site, printed[E3])
    assert await signs_in(site, new3)
    audit = [r[0] for r in sgw.staff_rows(
        "SELECT action FROM audit WHERE action LIKE 'codes.%' AND action != 'codes.viewed' ORDER BY id")]
    assert audit == ["codes.minted", "codes.revoked", "codes.reissued"]


async def test_only_admins_and_the_institutions_responsible_worker_act_for_it(
        sgw: StaffGateway, staff: dict[str, StaffClient]) -> None:
    for name, path, expected in [
        ("stranger", f"/staff/codes/{INSTITUTION}/mint", 403),
        ("worker", f"/staff/codes/{OTHER}/mint", 403),
        ("admin", f"/staff/codes/{OTHER}/mint", 200),
    ]:
        status, _, _ = await post_pdf(staff[name], path, KIND)
        assert status == expected, (name, path)
    status, page, _ = await staff["stranger"].get(f"/staff/codes/{INSTITUTION}")
    assert status == 403 and "Жұмабаева" not in page
    assert sgw.staff_rows("SELECT count(*) FROM access_codes WHERE institution_code = ?", INSTITUTION) == [(0,)]


@pytest.mark.parametrize(("change", "field"), [
    ({"institution_kind": "castle"}, "institution_kind"),
    ({"worker_id": ""}, "worker_id"),
    ({"worker_id": "W 17; DROP"}, "worker_id"),
])
async def test_bad_minting_input_is_a_clear_400_and_mints_nothing(
        sgw: StaffGateway, staff: dict[str, StaffClient], change: dict[str, str], field: str) -> None:
    status, page, _ = await post_pdf(staff["worker"], f"/staff/codes/{INSTITUTION}/mint", {**KIND, **change})
    assert status == 400 and f"{field}:".encode() in page
    assert sgw.staff_rows("SELECT count(*) FROM access_codes") == [(0,)]


async def test_a_worker_registers_an_unlisted_resident_who_signs_in_and_counts_as_an_addition(
        sgw: StaffGateway, staff: dict[str, StaffClient], site: Web) -> None:
    worker = staff["worker"]
    resident = {"surname": "Омарова", "given_name": "Дана", "patronymic": "", "birth_date": "1950-03-04", **KIND}
    status, pdf, ctype = await post_pdf(worker, f"/staff/codes/{INSTITUTION}/residents", resident)
    assert status == 200 and ctype == "application/pdf"
    printed = codes_in(pdf)
    assert list(printed) == [f"{INSTITUTION}/90001"]
    assert "Омарова" in "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    status, pdf, _ = await post_pdf(worker, f"/staff/codes/{INSTITUTION}/residents", {**resident, "surname": "Ли"})
    assert list(codes_in(pdf)) == [f"{INSTITUTION}/90002"]
    await poll(site)
    assert await signs_in(site, printed[f"{INSTITUTION}/90001"])

    status, body, _ = await staff["admin"].get("/staff/export/coverage.csv")
    rows = {(r["level"], r["key"]): r for r in csv.DictReader(io.StringIO(body))}
    assert (rows[("institution", INSTITUTION)]["listed"], rows[("institution", INSTITUTION)]["additions"]) == ("5", "2")
    assert rows[("overall", "overall")]["additions"] == "2"

    # a re-import of the list keeps the additions
    form = aiohttp.FormData()
    form.add_field("csrf", staff["admin"].csrf)
    form.add_field("file", DASH_LIST.encode(), filename="list.csv", content_type="text/csv")
    assert (await staff["admin"].post("/staff/lists", form))[0] == 200
    assert sgw.staff_rows("SELECT entry_id FROM respondent_entries WHERE added_at_ms IS NOT NULL ORDER BY 1") == [
        (f"{INSTITUTION}/90001",), (f"{INSTITUTION}/90002",)]
    assert sgw.staff_rows("SELECT entry_count FROM respondent_lists WHERE institution_code = ?", INSTITUTION) == [(5,)]


@pytest.mark.parametrize(("change", "field"), [
    ({"surname": ""}, "surname"),
    ({"birth_date": "2999-01-01"}, "birth_date"),
    ({"birth_date": "04.03.1950"}, "birth_date"),
    ({"given_name": "=cmd|' /C calc'!A0"}, "given_name"),
])
async def test_a_bad_resident_form_adds_nothing(sgw: StaffGateway, staff: dict[str, StaffClient],
                                                change: dict[str, str], field: str) -> None:
    resident = {"surname": "Омарова", "given_name": "Дана", "patronymic": "", "birth_date": "1950-03-04", **KIND}
    status, page, _ = await post_pdf(staff["worker"], f"/staff/codes/{INSTITUTION}/residents", {**resident, **change})
    assert status == 400 and f"{field}:".encode() in page
    assert sgw.staff_rows("SELECT count(*) FROM respondent_entries WHERE added_at_ms IS NOT NULL") == [(0,)]
    assert sgw.staff_rows("SELECT count(*) FROM access_codes") == [(0,)]


async def test_the_code_feed_is_for_web_services_only_and_bound_to_the_request(
        env: Env, sgw: StaffGateway, staff: dict[str, StaffClient], tmp_path: Path) -> None:
    await post_pdf(staff["worker"], f"/staff/codes/{INSTITUTION}/mint", KIND)
    web_b, tab_b = env.web_bundle(), env.tablet_bundle()
    async with SignedGatewayClient(sgw.url, web_b.signing_key, ssl_context=None) as web_client:
        doc = parse_access_codes(await web_client.get_access_codes(0), web_b.gateway_key_map())
        assert (doc.web_id, doc.since, doc.latest, len(doc.codes)) == ("WEB-AST-01", 0, 3, 3)
        assert [c.version for c in doc.codes] == [1, 2, 3] and {c.status for c in doc.codes} == {"active"}
        tail = parse_access_codes(await web_client.get_access_codes(2), web_b.gateway_key_map())
        assert [c.entry_id for c in tail.codes] == [E3]
        for bad in ("01", "-1", "x", "9007199254740992"):
            with pytest.raises(GatewayRefused) as e:
                await web_client.request("GET", f"/v1/web/access-codes/since/{bad}")
            assert (e.value.status, e.value.problem_code) == (400, "malformed")
    async with SignedGatewayClient(sgw.url, tab_b.signing_key, ssl_context=None) as tablet:
        with pytest.raises(GatewayRefused) as e:
            await tablet.get_access_codes(0)
        assert (e.value.status, e.value.problem_code) == (403, "forbidden")
    async with aiohttp.ClientSession() as s, s.get(f"{sgw.url}/v1/web/access-codes/since/0") as r:
        assert r.status == 401 and (await r.json())["code"] == "missing-signature"


async def test_a_gateway_without_the_dashboard_answers_not_found(env: Env, tmp_path: Path) -> None:
    g = await serve_staff_gateway(env, tmp_path, staff=False)
    try:
        web_b = env.web_bundle()
        async with SignedGatewayClient(g.url, web_b.signing_key, ssl_context=None) as c:
            with pytest.raises(GatewayRefused) as e:
                await c.get_access_codes(0)
            assert (e.value.status, e.value.problem_code) == (404, "not-found")
    finally:
        await g.stop()


async def test_the_web_service_applies_a_document_only_after_the_version_it_holds(
        env: Env, sgw: StaffGateway, staff: dict[str, StaffClient], tmp_path: Path) -> None:
    from selfenum.code_feed import CodeFollower
    from selfenum.errors import OperatorError
    from selfenum.store import SelfenumStore

    await post_pdf(staff["worker"], f"/staff/codes/{INSTITUTION}/mint", KIND)
    await post_pdf(staff["worker"], f"/staff/codes/{INSTITUTION}/reissue", {"entry_id": E1, **KIND})
    store = SelfenumStore(tmp_path / "se.db", tmp_path / "spool")
    web_b = env.web_bundle()
    try:
        async with SignedGatewayClient(sgw.url, web_b.signing_key, ssl_context=None) as c:
            doc = parse_access_codes(await c.get_access_codes(0), web_b.gateway_key_map())
            assert [(x.version, x.entry_id, x.status) for x in doc.codes] == [
                (2, E2, "active"), (3, E3, "active"), (4, E1, "revoked"), (5, E1, "active")]
            store.apply_code_changes(0, doc.codes[:1], now_ms=now_ms())
            with pytest.raises(OperatorError):  # a replay of the first answer does not follow version 2
                store.apply_code_changes(0, doc.codes, now_ms=now_ms())
            assert store.codes_version() == 2
            own = pepper_id((sgw.staff_db.parent / "codes.pepper").read_bytes())
            assert doc.pepper_id == own
            follower = CodeFollower(store, c, web_id=web_b.device_id, pepper_id=own,
                                    gateway_keys=web_b.gateway_key_map)
            assert await follower.poll()
        assert store.codes_version() == 5
        assert store.counts()["codes_active"] == 3
    finally:
        store.close()


@pytest.mark.parametrize(("content", "expected"), [(None, "cannot be read"), (b"short", "exactly 32 bytes")])
def test_a_missing_or_wrong_dashboard_pepper_stops_the_service_and_none_is_made(
        env: Env, tmp_path: Path, content: bytes | None, expected: str) -> None:
    from selfenum.app import create_app
    from selfenum.errors import OperatorError

    pepper = tmp_path / "dashboard" / "codes.pepper"
    if content is not None:
        pepper.parent.mkdir()
        pepper.write_bytes(content)
    config = dataclasses.replace(selfenum_config(env, tmp_path / "se", "http://127.0.0.1:9"), codes_pepper_file=pepper)
    with pytest.raises(OperatorError, match=expected):
        create_app(config)
    assert pepper.exists() == (content is not None)  # never made at codes_pepper_file
    assert not (tmp_path / "se" / "codes.pepper").exists()


@pytest.mark.parametrize("action", ["mint", "revoke", "reissue", "residents"])
async def test_a_code_form_without_its_token_or_from_another_site_changes_nothing(
        sgw: StaffGateway, staff: dict[str, StaffClient], action: str) -> None:
    worker = staff["worker"]
    form = {"entry_id": E1, "surname": "Ли", "given_name": "Дана", "birth_date": "1950-03-04", **KIND}
    for token, origin in (("", worker.gw.url), ("wrong", worker.gw.url), (worker.csrf, "https://evil.example")):
        async with worker.session.post(f"{sgw.url}/staff/codes/{INSTITUTION}/{action}", data={"csrf": token, **form},
                                       headers={"Origin": origin}, allow_redirects=False) as r:
            assert r.status == 403 and r.content_type == "text/html"
    assert sgw.staff_rows("SELECT count(*) FROM access_codes") == [(0,)]
    assert sgw.staff_rows("SELECT count(*) FROM respondent_entries WHERE added_at_ms IS NOT NULL") == [(0,)]


async def test_a_web_service_with_another_pepper_says_so_and_applies_nothing(
        env: Env, sgw: StaffGateway, staff: dict[str, StaffClient], tmp_path: Path) -> None:
    """Forgetting to copy the dashboard's pepper is an error in the log, not silently dead codes."""
    import structlog

    from selfenum.app import APP

    status, pdf, _ = await post_pdf(staff["worker"], f"/staff/codes/{INSTITUTION}/mint", KIND)
    assert status == 200
    w = await serve_selfenum(selfenum_config(env, tmp_path / "own-pepper", sgw.url))  # makes its own pepper
    try:
        follower = w.app[APP].codes
        assert follower is not None
        with structlog.testing.capture_logs() as logs:
            assert not await follower.poll()
        # (the background loop's own first poll may log it too)
        assert {e["event"] for e in logs if e["log_level"] == "error"} == {"selfenum.codes.pepper_mismatch"}
        assert w.app[APP].store.codes_version() == 0 and w.app[APP].store.counts()["codes_active"] == 0
        assert not await signs_in(w, codes_in(pdf)[E1])
    finally:
        await w.stop()


HOUSEHOLD_LIST = (
    "institution_code,entry_id,list_date,surname,given_name,patronymic,birth_date,household\n"
    f"{INSTITUTION},1,2026-06-01,Жұмабаева,Ақмарал,Серікқызы,1961-04-12,H-7\n"
    f"{INSTITUTION},2,2026-06-01,Жұмабаев,Ерлан,,1990-01-02,H-7\n"
    f"{INSTITUTION},3,2026-06-01,Сейітов,Нұрлан,,1975-09-30,\n"
)


async def test_a_household_gets_one_code_that_opens_each_members_sheet_in_turn(
        sgw: StaffGateway, staff: dict[str, StaffClient], site: Web) -> None:
    import json

    from selfenum.app import APP

    from .bed import ANSWERS
    from .browserless import Respondent

    admin = staff["admin"]
    form = aiohttp.FormData()
    form.add_field("csrf", admin.csrf)
    form.add_field("file", HOUSEHOLD_LIST.encode(), filename="households.csv", content_type="text/csv")
    assert (await admin.post("/staff/lists", form))[0] == 200
    status, pdf, _ = await post_pdf(staff["worker"], f"/staff/codes/{INSTITUTION}/mint", KIND)
    assert status == 200
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    printed = [normalise_code(w) for w in text.split() if len(w) == 24 and w.count("-") == 4]
    assert len(printed) == 2  # the household H-7 (entries 1 and 2) and entry 3
    assert "Жұмабаева" in text and "Жұмабаев Ерлан" in text
    household_code = printed[0]
    assert sgw.staff_rows("SELECT entry_id, members FROM access_codes ORDER BY version") == [
        (E1, json.dumps([E1, E2])), (E3, None)]
    await poll(site)

    r = Respondent(site.url)
    try:
        status, page, path = await r.sign_in(household_code)
        assert (status, path) == (200, "/members") and E1 in page and E2 in page
        token = r.csrf()
        status, _, path = await r.post("/q/name", {"surname": "X", "given_name": "Y", "action": "next"})
        assert path == "/members"  # no sheet before a member is chosen
        for entry, surname in ((E1, "Жұмабаева"), (E2, "Жұмабаев")):
            await r.get("/members")
            status, _, path = await r.post("/members", {"entry": entry})
            assert (status, path) == (200, "/q/name")
            await r.fill({**ANSWERS, "name": {**ANSWERS["name"], "surname": surname}})
            status, page, path = await r.post("/submit", {})
            assert (status, path) == (200, "/done") and 'href="/members"' in page
        status, page = await r.get("/members")
        assert page.count("Жіберілді") == 2 and 'name="entry"' not in page  # both sent, nothing more to choose
        status, _, path = await r.post("/members", {"entry": E1}, csrf=token)
        assert path == "/members"  # a member's sheet is sent once
    finally:
        await r.close()
    store = site.app[APP].store
    assert (store.submission(E1) is not None, store.submission(E2) is not None, store.submission(E3)) == (
        True, True, None)
    db = sqlite3.connect(sgw.db_path)
    try:
        gw_sheets = db.execute("SELECT body FROM sheets").fetchall()
    finally:
        db.close()
    sheets = sorted((json.loads(b)["respondent_list_entry"], json.loads(b)["persons"][0]["surname"])
                    for (b,) in gw_sheets)
    assert sheets == [(E1, "Жұмабаева"), (E2, "Жұмабаев")]

    # revoking one member's code revokes the household's one code
    worker = staff["worker"]
    status, _, _ = await worker.post(f"/staff/codes/{INSTITUTION}/revoke", {"csrf": worker.csrf, "entry_id": E2})
    assert status == 303
    await poll(site)
    assert not await signs_in(site, household_code)


async def test_no_pepper_complaint_while_the_dashboard_has_minted_nothing(
        env: Env, sgw: StaffGateway, tmp_path: Path) -> None:
    """A service that mints only with the CLI (its own pepper) stays quiet until the dashboard mints."""
    import structlog

    from selfenum.app import APP

    w = await serve_selfenum(selfenum_config(env, tmp_path / "cli-only", sgw.url))
    try:
        follower = w.app[APP].codes
        assert follower is not None
        with structlog.testing.capture_logs() as logs:
            assert await follower.poll()
        assert not [e for e in logs if e["log_level"] in ("warning", "error")]
    finally:
        await w.stop()


def test_set_institutions_refuses_unknown_users_and_bad_codes(sgw: StaffGateway, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    from gateway.staff.__main__ import main as staff_cli

    db = str(sgw.staff_db)
    assert staff_cli(["set-institutions", "--db", db, "--username", "nobody", INSTITUTION]) == 2
    assert staff_cli(["set-institutions", "--db", db, "--username", "worker", "AB-1"]) == 2
    assert "no such user" in capsys.readouterr().err
    assert sgw.staff_rows("SELECT institution_code FROM user_institutions") == [(INSTITUTION,)]
    assert staff_cli(["set-institutions", "--db", db, "--username", "worker"]) == 0  # no codes: cleared
    assert sgw.staff_rows("SELECT count(*) FROM user_institutions") == [(0,)]


@pytest.mark.postgres
async def test_on_postgresql_codes_minted_on_the_dashboard_reach_the_site_and_sign_in(
        env: Env, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The staff tables in the census PostgreSQL database feed the web service exactly as staff.db does."""
    cluster = request.getfixturevalue("pg_cluster")
    name = await create_database(cluster)
    try:
        gw = await serve_staff_gateway(env, tmp_path, dsn=cluster.dsn(name))
        admin = StaffClient(gw)
        config = dataclasses.replace(selfenum_config(env, tmp_path / "selfenum", gw.url),
                                     codes_pepper_file=tmp_path / "codes.pepper")
        w = await serve_selfenum(config)
        try:
            assert await admin.login("admin") == 303
            form = aiohttp.FormData()
            form.add_field("csrf", admin.csrf)
            form.add_field("file", DASH_LIST.encode(), filename="list.csv", content_type="text/csv")
            assert (await admin.post("/staff/lists", form))[0] == 200
            status, pdf, _ = await post_pdf(admin, f"/staff/codes/{INSTITUTION}/mint", KIND)
            assert status == 200
            printed = codes_in(pdf)
            assert set(printed) == {E1, E2, E3}
            await poll(w)
            assert await signs_in(w, printed[E1])
            revoked = await admin.post(f"/staff/codes/{INSTITUTION}/revoke", {"csrf": admin.csrf, "entry_id": E1})
            assert revoked[0] == 303
            await poll(w)
            assert not await signs_in(w, printed[E1]) and await signs_in(w, printed[E2])
            stored = gw.staff_rows("SELECT entry_id, status FROM access_codes ORDER BY entry_id")
            assert stored == [(E1, "revoked"), (E2, "active"), (E3, "active")]
        finally:
            await admin.close()
            await w.stop()
            await gw.stop()
    finally:
        await drop_database(cluster, name)
