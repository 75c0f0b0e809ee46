"""The respondent's road end to end over real HTTP: code, pages, errors, drafts, submission, the gateway store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from selfenum.i18n import Catalogs
from selfenum.questionnaire import FIELDS, OPTION_LABELS, PAGES
from wire import parse_receipt

from .bed import (
    ANSWERS,
    INSTITUTION,
    WEB_ID,
    Env,
    Gateway,
    Web,
    files_under,
    mint,
    now_ms,
    selfenum_config,
    serve_gateway,
    serve_selfenum,
)
from .browserless import Respondent

ENTRY1 = f"{INSTITUTION}/00001"
PLANTED = "Жұмабаева"


async def _respondent(site: Web) -> Respondent:
    return Respondent(site.url)


async def test_full_road_stores_the_sheet_and_leaves_no_plaintext(site: Web, gw: Gateway, codes: dict[str, str],
                                                                  config: Any, env: Env) -> None:
    r = await _respondent(site)
    try:
        status, _, path = await r.sign_in(codes[ENTRY1].lower())
        assert (status, path) == (200, "/q/name")
        status, page, path = await r.fill(ANSWERS)
        assert path == "/q/check" and "Жұмабаева" in page and "Жауаптарыңызды".lower() in page.lower()
        status, page, path = await r.post("/submit", {})
    finally:
        await r.close()
    assert (status, path) == (200, "/done")
    assert "Халық санағы деректерінің базасына" in page  # received, in Kazakh, with the receive time
    rows = gw.rows("SELECT road, device_id, receipt FROM batches")
    assert len(rows) == 1 and rows[0][:2] == (f"web:{WEB_ID}", WEB_ID)
    receipt = parse_receipt(rows[0][2], env.web_bundle().gateway_key_map())
    sheet = json.loads(gw.rows("SELECT body FROM sheets")[0][0])
    assert sheet["respondent_list_entry"] == ENTRY1 and sheet["persons"][0]["surname"] == PLANTED
    assert gw.rows("SELECT count(*) FROM quarantine") == [(0,)]
    # The confirmation shows the receive time of the verified receipt (Astana time).
    from datetime import datetime, timedelta, timezone
    when = datetime.fromtimestamp(receipt.received_at_ms / 1000, timezone(timedelta(hours=5)))
    assert when.strftime("%d.%m.%Y %H:%M:%S") in page
    await site.stop()  # close the database so every byte is on disk
    planted = PLANTED.encode()
    for f in files_under(config.state_dir):
        assert planted not in f.read_bytes(), f
    con = sqlite3.connect(config.state_dir / "selfenum.db")
    assert con.execute("SELECT count(*) FROM drafts").fetchone() == (0,)
    assert con.execute("SELECT state FROM submissions").fetchall() == [("delivered",)]


async def test_required_field_error_in_kazakh_links_to_the_field(site: Web, codes: dict[str, str]) -> None:
    r = await _respondent(site)
    try:
        await r.sign_in(codes[ENTRY1])
        await r.get("/q/name")
        status, page, _ = await r.post("/q/name", {"surname": "", "given_name": "Ақмарал", "action": "next"})
        assert status == 400
        assert '<a href="#surname">Тегіңізді енгізіңіз</a>' in page  # error summary, Kazakh, links to the field
        assert 'id="surname-error"' in page and 'value="Ақмарал"' in page
        await r.get("/language/ru?next=/q/name")
        status, page, _ = await r.post("/q/name", {"surname": "X1", "given_name": "Иван", "action": "next"})
        assert status == 400 and "Используйте только буквы" in page
        status, page, _ = await r.post("/q/about", {"sex": "female", "birth_date-day": "31",
                                                    "birth_date-month": "2", "birth_date-year": "1980",
                                                    "action": "next"})
        assert status == 400 and "Дата рождения должна быть реальной датой" in page
    finally:
        await r.close()


async def test_save_and_resume_in_a_new_session(site: Web, codes: dict[str, str], config: Any) -> None:
    first = await _respondent(site)
    try:
        await first.sign_in(codes[ENTRY1])
        _, page, _ = await first.fill({"name": ANSWERS["name"], "about": ANSWERS["about"]}, action="save")
        assert "Жауаптарыңыз сақталды" in page
    finally:
        await first.close()
    con = sqlite3.connect(config.state_dir / "selfenum.db")
    (sealed,) = con.execute("SELECT sealed FROM drafts").fetchone()
    assert PLANTED.encode() not in sealed
    second = await _respondent(site)
    try:
        _status, page, path = await second.sign_in(codes[ENTRY1])
        assert path == "/q/origin"  # continues where the first session stopped
        _, page = await second.get("/q/name")
        assert f'value="{PLANTED}"' in page
    finally:
        await second.close()


async def test_double_submit_shows_the_first_confirmation(site: Web, gw: Gateway, codes: dict[str, str]) -> None:
    r = await _respondent(site)
    try:
        await r.sign_in(codes[ENTRY1])
        await r.fill(ANSWERS)
        token = r.csrf()
        _, first, _ = await r.post("/submit", {}, csrf=token)
        _, second, path = await r.post("/submit", {}, csrf=token)
        assert path == "/done" and second == first
    finally:
        await r.close()
    again = await _respondent(site)
    try:
        _, page, path = await again.sign_in(codes[ENTRY1])
        assert path == "/done" and page == first
    finally:
        await again.close()
    assert gw.rows("SELECT count(*) FROM batches") == [(1,)]


async def test_concurrent_submits_store_one_sheet(site: Web, gw: Gateway, codes: dict[str, str]) -> None:
    r = await _respondent(site)
    try:
        await r.sign_in(codes[ENTRY1])
        await r.fill(ANSWERS)
        token = r.csrf()
        results = await asyncio.gather(*(r.post("/submit", {}, csrf=token) for _ in range(8)))
    finally:
        await r.close()
    assert {path for _, _, path in results} == {"/done"}
    assert gw.rows("SELECT count(*) FROM batches") == [(1,)]


@pytest.mark.parametrize(("case", "expected_status"), [
    ("empty", 400), ("typo-check-char", 400), ("unknown", 400), ("revoked", 400), ("too-long", 400),
])
async def test_bad_codes_open_nothing(site: Web, codes: dict[str, str], config: Any, case: str,
                                      expected_status: int) -> None:
    from keys.access_codes import ALPHABET, mint_code
    from selfenum.store import SelfenumStore

    good = codes[ENTRY1]
    if case == "revoked":
        store = SelfenumStore(config.state_dir / "selfenum.db", config.state_dir / "spool")
        store.revoke_entry(ENTRY1, now_ms=1)
        store.close()
    text = {"empty": "  ", "typo-check-char": good[:-1] + next(c for c in ALPHABET if c != good[-1]),
            "unknown": mint_code(), "revoked": good, "too-long": good * 4}[case]
    r = await _respondent(site)
    try:
        status, page, path = await r.sign_in(text)
        assert (status, path) == (expected_status, "/start")
        assert 'href="#code"' in page
        status, _ = await r.get("/q/name")
        assert r.last.count('name="code"') == 1  # sent back to the start page
    finally:
        await r.close()


@pytest.mark.parametrize(("opens", "closes", "text"), [
    ("2099-01-01T00:00:00+05:00", "2099-01-16T00:00:00+05:00", "әлі басталған жоқ"),
    ("2020-10-01T00:00:00+05:00", "2020-10-16T00:00:00+05:00", "бастап жабық"),
])
async def test_window_closed_accepts_nothing(env: Env, gw: Gateway, tmp_path: Path, opens: str, closes: str,
                                            text: str) -> None:
    config = selfenum_config(env, tmp_path / "se", gw.url, opens=opens, closes=closes)
    codes = mint(config)
    w = await serve_selfenum(config)
    r = Respondent(w.url)
    try:
        status, page = await r.get("/")
        assert status == 403 and text in page and 'name="code"' not in page
        async with r.session.post(w.url + "/start", data={"csrf": "x", "code": codes[ENTRY1]}) as resp:
            assert resp.status == 403
    finally:
        await r.close()
        await w.stop()


async def test_a_draft_cannot_be_submitted_after_the_close(env: Env, gw: Gateway, tmp_path: Path) -> None:
    clock = {"now": 1_900_000_000_000}
    config = selfenum_config(env, tmp_path / "se", gw.url, opens="2020-01-01T00:00:00+05:00",
                             closes="2030-03-17T17:46:40+00:00")  # = 1_900_000_000_000 + 0 ms
    codes = mint(config)
    clock["now"] = config.window.closes_ms() - 60_000
    w = await serve_selfenum(config, clock_ms=lambda: clock["now"])
    r = Respondent(w.url)
    try:
        await r.sign_in(codes[ENTRY1])
        await r.fill(ANSWERS)
        token = r.csrf()
        clock["now"] = config.window.closes_ms()
        status, page, _ = await r.post("/submit", {}, csrf=token)
        assert status == 403 and "бастап жабық" in page
    finally:
        await r.close()
        await w.stop()
    assert gw.rows("SELECT count(*) FROM batches") == [(0,)]


@pytest.mark.parametrize("token", [None, "", "0" * 64])
async def test_csrf_missing_empty_or_wrong_is_refused(site: Web, codes: dict[str, str], token: str | None) -> None:
    r = await _respondent(site)
    try:
        await r.get("/")
        data = {"code": codes[ENTRY1]} | ({} if token is None else {"csrf": token})
        async with r.session.post(site.url + "/start", data=data) as resp:
            assert resp.status == 403
            assert "sq_s" not in resp.cookies
    finally:
        await r.close()


async def test_security_headers_and_cookies(env: Env, gw: Gateway, tmp_path: Path) -> None:
    from dataclasses import replace

    base = selfenum_config(env, tmp_path / "se", gw.url)
    config = replace(base, server=replace(base.server, insecure_cookies=False))
    codes = mint(config)
    w = await serve_selfenum(config)
    r = Respondent(w.url)
    try:
        async with r.session.get(w.url + "/") as resp:
            h = resp.headers
            r.last = await resp.text()
            assert "default-src 'none'" in h["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
            assert h["Strict-Transport-Security"].startswith("max-age=")
            assert h["X-Frame-Options"] == "DENY" and h["Cache-Control"] == "no-store"
            csrf_cookie = resp.headers.getall("Set-Cookie")
        assert all("Secure" in c and "HttpOnly" in c and "SameSite=Strict" in c for c in csrf_cookie)
        assert "http://" not in r.last.split("<body>", 1)[1] and "https://" not in r.last  # no third-party assets
        async with r.session.get(w.url + "/v1/batches") as resp:
            assert resp.status == 404  # the device API is not here
        async with r.session.post(w.url + "/start", data={"csrf": "x", "code": codes[ENTRY1] * 2000}) as resp:
            assert resp.status == 413
    finally:
        await r.close()
        await w.stop()


async def test_gateway_down_then_up_delivers_once(env: Env, tmp_path: Path) -> None:
    gw = await serve_gateway(env, tmp_path / "census.db")
    port = int(gw.url.rsplit(":", 1)[1])
    await gw.stop()
    config = selfenum_config(env, tmp_path / "se", gw.url)
    codes = mint(config)
    w = await serve_selfenum(config)
    r = Respondent(w.url)
    try:
        await r.sign_in(codes[ENTRY1])
        await r.fill(ANSWERS)
        status, page, path = await r.post("/submit", {})
        assert (status, path) == (200, "/done") and "жақын арада" in page  # accepted, will be delivered
        gw = await serve_gateway(env, tmp_path / "census.db", port=port)
        try:
            se = w.app[__import__("selfenum.context", fromlist=["APP"]).APP]
            for _ in range(400):
                if se.store.counts()["delivered"] == 1:
                    break
                await asyncio.sleep(0.025)
            assert se.store.counts()["delivered"] == 1
            assert gw.rows("SELECT count(*) FROM batches") == [(1,)]
            _, page = await r.get("/done")
            assert "Халық санағы деректерінің базасына" in page
        finally:
            await gw.stop()
    finally:
        await r.close()
        await w.stop()


async def test_concurrent_guessing_is_throttled_without_locking_out_others(env: Env, gw: Gateway,
                                                                           tmp_path: Path) -> None:
    from dataclasses import replace

    from keys.access_codes import mint_code

    base = selfenum_config(env, tmp_path / "se", gw.url, per_address=5)
    config = replace(base, server=replace(base.server, trusted_proxy=True))
    codes = mint(config)
    w = await serve_selfenum(config)
    guesser = Respondent(w.url)
    try:
        await guesser.get("/")
        token = guesser.csrf()

        async def guess() -> int:
            data = {"csrf": token, "code": mint_code()}
            async with guesser.session.post(w.url + "/start", data=data,
                                            headers={"X-Forwarded-For": "203.0.113.9"}) as resp:
                return resp.status

        statuses = await asyncio.gather(*(guess() for _ in range(60)))
        assert statuses.count(400) == 5 and statuses.count(429) == 55
        # The guesser's own right code is refused too while throttled...
        async with guesser.session.post(w.url + "/start", data={"csrf": token, "code": codes[ENTRY1]},
                                        headers={"X-Forwarded-For": "203.0.113.9"}) as resp:
            assert resp.status == 429
        # ...but a respondent elsewhere is not locked out, and typos (bad check character) cost nothing.
        other = Respondent(w.url)
        try:
            await other.get("/")
            t = other.csrf()
            for _ in range(10):
                async with other.session.post(w.url + "/start", data={"csrf": t, "code": "2222-2222"},
                                              headers={"X-Forwarded-For": "198.51.100.7"}) as resp:
                    assert resp.status == 400
            async with other.session.post(w.url + "/start", data={"csrf": t, "code": codes[ENTRY1]},
                                          headers={"X-Forwarded-For": "198.51.100.7"}) as resp:
                assert resp.status == 200 and resp.url.path == "/q/name"
        finally:
            await other.close()
    finally:
        await guesser.close()
        await w.stop()


def _ui_strings(source: str) -> set[str]:
    """String constants the pages hand to gettext: arguments of the page helpers and their title= keywords."""
    import ast

    helpers = {"gettext", "_message", "_render", "FieldError"}
    found: set[str] = set()

    def take(node: ast.AST) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and " " in node.value:
            found.add(node.value)
        elif isinstance(node, ast.List):
            for item in node.elts:
                take(item)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers:
            for arg in node.args:
                take(arg)
            for kw in node.keywords:
                if kw.arg in ("title", "paragraphs"):
                    take(kw.value)
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper():
            take(node.value)
    return found


def test_every_message_is_translated() -> None:
    import re
    msgids = {f.label for f in FIELDS.values()} | {f.hint for f in FIELDS.values() if f.hint}
    msgids |= {f.missing for f in FIELDS.values() if f.missing} | {f.invalid for f in FIELDS.values()}
    msgids |= {p.title for p in PAGES} | set(OPTION_LABELS.values())
    root = Path(__file__).parents[2] / "selfenum"
    for t in (root / "templates").glob("*.html"):
        msgids |= set(re.findall(r'_\("([^"]+)"\)', t.read_text("utf-8")))
    ui = _ui_strings((root / "web_pages.py").read_text("utf-8"))
    assert "Fill in your census sheet online" in ui and any(m.startswith("Online self-enumeration is closed since")
                                                           for m in ui)
    msgids |= ui - {"text/html", "sq_s"}
    from selfenum.contacts import BAD_CONTACT
    from selfenum.web_pages import ANOTHER_MEMBER, CODE_REFUSED, REMINDER_LINK, TOO_MANY

    msgids |= {ANOTHER_MEMBER, BAD_CONTACT, CODE_REFUSED, REMINDER_LINK, TOO_MANY}
    catalogs = Catalogs()
    for lang in ("kk", "ru"):
        assert catalogs.missing(lang, sorted(msgids)) == [], lang


async def test_logs_and_metrics_carry_no_personal_data(site: Web, codes: dict[str, str]) -> None:
    import structlog

    r = await _respondent(site)
    try:
        with structlog.testing.capture_logs() as logs:
            await r.sign_in(codes[ENTRY1])
            await r.fill(ANSWERS)
            await r.post("/submit", {})
        _, metrics = await r.get("/metrics")
    finally:
        await r.close()
    assert {e["event"] for e in logs} >= {"selfenum.session.started", "selfenum.draft.saved",
                                          "selfenum.sheet.accepted"}
    text = repr(logs) + metrics
    secrets = [codes[ENTRY1], ENTRY1, "127.0.0.1", *(v for page in ANSWERS.values() for v in page.values()
                                                    if len(v) > 3)]
    assert [s for s in secrets if s in text] == []
    assert "sanaq_selfenum_delivered 1" in metrics
    async with aiohttp.ClientSession() as s, s.get(site.url + "/metrics",
                                                  headers={"X-Forwarded-For": "203.0.113.9"}) as resp:
        assert resp.status == 404  # through the public proxy: not there


def test_example_config_loads_and_keeps_the_founding_window() -> None:
    from selfenum.config import load_config

    config = load_config(Path(__file__).parents[2] / "systemd" / "examples" / "selfenum.toml")
    assert config.window.opens().isoformat() == "2020-10-01T00:00:00+05:00"
    assert config.window.closes().isoformat() == "2020-10-16T00:00:00+05:00"
    assert not config.server.insecure_cookies


async def test_session_ends_after_idle_time_and_activity_extends_it(env: Env, gw: Gateway, tmp_path: Path) -> None:
    clock = {"now": 1_800_000_000_000}
    config = selfenum_config(env, tmp_path / "se", gw.url)
    codes = mint(config)
    w = await serve_selfenum(config, clock_ms=lambda: clock["now"])
    r = Respondent(w.url)
    idle_ms = config.limits.session_idle_s * 1000
    try:
        await r.sign_in(codes[ENTRY1])
        clock["now"] += idle_ms - 1000
        await r.get("/q/name")
        _, _, path = await r.post("/q/name", {**ANSWERS["name"], "action": "next"})
        assert path == "/q/about"  # still signed in; the save moved the idle limit
        clock["now"] += idle_ms - 1000
        status, _ = await r.get("/q/about")
        assert status == 200
        assert 'name="sex"' in r.last
        clock["now"] += idle_ms + 1
        status, page = await r.get("/q/about")
        assert 'name="code"' in page  # idle too long: back to the start
    finally:
        await r.close()
        await w.stop()


async def test_language_link_on_a_refused_code_page_leads_somewhere(site: Web) -> None:
    r = await _respondent(site)
    try:
        status, page, _ = await r.sign_in("2222")
        assert status == 400 and 'href="/language/ru?next=/"' in page
        status, page = await r.get("/language/ru?next=/")
        assert status == 200 and "Введите код доступа" in page
    finally:
        await r.close()


async def test_the_service_follows_newer_registry_snapshots_from_the_gateway(env: Env, gw: Gateway,
                                                                              tmp_path: Path) -> None:
    from dataclasses import replace

    base = selfenum_config(env, tmp_path / "se", gw.url)
    config = replace(base, forward=replace(base.forward, registry_refresh_s=0.05))
    mint(config)
    w = await serve_selfenum(config)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(w.url + "/readyz") as r:
                first = (await r.json())["registry_version"]
            newer = env.authority.publish(now_ms=now_ms(), validity_ms=7 * 86_400_000)
            async with s.put(gw.url + "/v1/registry", data=newer,
                             headers={"Content-Type": "application/vnd.sanaq.snapshot"}) as r:
                assert r.status == 200
            version = first
            for _ in range(200):
                async with s.get(w.url + "/readyz") as r:
                    version = (await r.json())["registry_version"]
                if version > first:
                    break
                await asyncio.sleep(0.02)
        assert first >= 1 and version == first + 1
        assert (config.state_dir / "registry.snapshot").read_bytes() == newer
    finally:
        await w.stop()


async def test_a_spool_that_cannot_be_written_accepts_nothing_and_keeps_the_draft(site: Web, gw: Gateway,
                                                                                 codes: dict[str, str],
                                                                                 config: Any) -> None:
    r = await _respondent(site)
    spool = config.state_dir / "spool"
    try:
        await r.sign_in(codes[ENTRY1])
        await r.fill(ANSWERS)
        token = r.csrf()
        # The spool cannot take a file (tests run as root, so a mode would not stop it): a failing disk.
        spool.rename(spool.with_name("spool.away"))
        spool.write_bytes(b"")
        try:
            status, page, _ = await r.post("/submit", {}, csrf=token)
        finally:
            spool.unlink()
            spool.with_name("spool.away").rename(spool)
        assert status == 503 and "жауаптарыңыз сақталған" in page
        con = sqlite3.connect(config.state_dir / "selfenum.db")
        assert con.execute("SELECT count(*) FROM submissions").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM drafts").fetchone() == (1,)
        status, _, path = await r.post("/submit", {}, csrf=token)  # the disk is back: it goes through
        assert (status, path) == (200, "/done")
    finally:
        await r.close()
    assert gw.rows("SELECT count(*) FROM batches") == [(1,)]
