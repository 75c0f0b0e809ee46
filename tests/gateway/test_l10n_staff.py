# ruff: noqa: RUF001  (Kazakh and Russian expectations)
"""The staff dashboard in Kazakh and Russian over real HTTP, and once in a real browser.

The gateway's default page language here is ``kk`` (the product's default);
the switch is remembered per user in staff.db and before login by cookie.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .harness import World
from .staff_browser import (
    LIST_HEADER,
    PASSWORD,
    StaffClient,
    StaffGateway,
    chromium,
    chromium_available,
    csrf_of,
    list_csv,
    staff_config,
    upload,
)
from .staff_browser import start_staff_gateway as start
from .test_staff_dashboard import read_event

ENGLISH_NAV = ("Custody acts", "Respondent lists", "Log out", "Statistics Department")


@pytest.fixture
async def gw(world: World, tmp_path: Path) -> AsyncIterator[StaffGateway]:
    gateway = await start(world, tmp_path, staff=staff_config(language="kk"))
    yield gateway
    await gateway.stop()


@pytest.fixture
async def admin(gw: StaffGateway) -> AsyncIterator[StaffClient]:
    client = StaffClient(gw)
    assert await client.login("admin") == 303
    yield client
    await client.close()


async def switch(client: StaffClient, lang: str, **extra: str) -> tuple[int, str]:
    status, html, resp = await client.post("/staff/language", {"csrf": client.csrf, "lang": lang, **extra})
    return status, resp.headers.get("Location", html)


def visible_english(html: str) -> list[str]:
    return [w for w in ENGLISH_NAV if w in html]


async def test_the_default_language_is_kazakh_in_every_page_and_number(gw: StaffGateway, admin) -> None:
    for path in ("/staff/", "/staff/acts", "/staff/lists", "/staff/missing", "/staff/accounts"):
        status, html, _ = await admin.get(path)
        assert status == 200, path
        assert '<html lang="kk">' in html and visible_english(html) == [], path
        assert "Статистика департаменті" in html and "Қабылдау-беру актілері" in html
    _, home, _ = await admin.get("/staff/")
    assert "сақталған санақ парақтары" in home and "Астана уақыты, UTC+05:00" in home
    assert 'data-live="тікелей"' in home  # the live badge's words for staff.js


async def test_the_switch_is_remembered_for_the_user_not_the_browser(gw: StaffGateway, admin) -> None:
    assert await switch(admin, "ru", next="/staff/acts") == (303, "/staff/acts")
    assert gw.staff_rows("SELECT language FROM users WHERE username = 'admin'") == [("ru",)]
    _, html, _ = await admin.get("/staff/acts")
    assert '<html lang="ru">' in html and "Акты приёма-передачи" in html and visible_english(html) == []
    fresh = StaffClient(gw)  # another browser, no cookie: the user's choice still holds
    try:
        assert await fresh.login("admin") == 303
        _, html, _ = await fresh.get("/staff/")
        assert '<html lang="ru">' in html and "Панель" in html
    finally:
        await fresh.close()
    viewer = StaffClient(gw)
    try:
        assert await viewer.login("viewer") == 303
        _, html, _ = await viewer.get("/staff/")
        assert '<html lang="kk">' in html  # other users keep the default
        status, html, _ = await viewer.get("/staff/accounts")  # the error page is in the user's language too
        assert status == 403 and "Бұл бет әкімшілерге арналған." in html and '<html lang="kk">' in html
    finally:
        await viewer.close()


async def test_english_and_back(gw: StaffGateway, admin) -> None:
    assert (await switch(admin, "en"))[0] == 303
    _, html, _ = await admin.get("/staff/")
    assert '<html lang="en">' in html and "Custody acts" in html and "census sheets stored" in html
    assert (await switch(admin, "kk"))[0] == 303
    _, html, _ = await admin.get("/staff/")
    assert "Custody acts" not in html


@pytest.mark.parametrize(
    ("form", "status"),
    [({"lang": "de"}, 400), ({"lang": ""}, 400), ({}, 400), ({"lang": "kk", "csrf": "forged"}, 403)],
    ids=["unknown", "empty", "missing", "bad-token"],
)
async def test_a_bad_switch_is_refused_and_changes_nothing(gw: StaffGateway, admin, form, status) -> None:
    body = {"csrf": admin.csrf} | form
    got, html, resp = await admin.post("/staff/language", body)
    assert got == status and "Set-Cookie" not in resp.headers
    assert '<html lang="kk">' in html  # the refusal itself is in the reader's language
    assert gw.staff_rows("SELECT language FROM users WHERE username = 'admin'") == [(None,)]


async def test_a_switch_from_another_site_is_refused(gw: StaffGateway, admin) -> None:
    got, _, _ = await admin.post(
        "/staff/language", {"csrf": admin.csrf, "lang": "ru"}, headers={"Origin": "https://evil.example"}
    )
    assert got == 403
    assert gw.staff_rows("SELECT language FROM users WHERE username = 'admin'") == [(None,)]


@pytest.mark.parametrize("target", ["https://evil.example/staff/", "//evil.example/staff/", "/other", "/staff/logout"])
async def test_the_switch_only_returns_to_a_staff_page(gw: StaffGateway, admin, target: str) -> None:
    assert await switch(admin, "ru", next=target) == (303, "/staff/")


async def test_the_login_page_switch_is_kept_once_logged_in(gw: StaffGateway) -> None:
    client = StaffClient(gw)
    try:
        _, page, _ = await client.get("/staff/login")
        assert "Қызметкерлердің кіруі" in page
        status, _, resp = await client.post("/staff/language", {"lang": "ru", "next": "/staff/login"})
        assert status == 303 and resp.headers["Location"] == "/staff/login"
        _, page, _ = await client.get("/staff/login")
        assert '<html lang="ru">' in page and "Вход для сотрудников" in page
        status, page, _ = await client.post(
            "/staff/login", {"csrf": csrf_of(page), "username": "viewer", "password": "wrong"}
        )
        assert status == 401 and "Неверное имя пользователя или пароль." in page
        assert await client.login("viewer") == 303
        assert gw.staff_rows("SELECT language FROM users WHERE username = 'viewer'") == [("ru",)]
    finally:
        await client.close()


async def test_live_fragments_come_in_the_readers_language(gw: StaffGateway, admin) -> None:
    viewer = StaffClient(gw)
    try:
        assert await viewer.login("viewer") == 303
        assert (await switch(admin, "ru"))[0] == 303
        async with admin.session.get(gw.url + "/staff/events") as ru_stream, viewer.session.get(
            gw.url + "/staff/events"
        ) as kk_stream:
            ru = json.loads((await read_event(ru_stream))[1])["fragments"]
            kk = json.loads((await read_event(kk_stream))[1])["fragments"]
        assert "переписных листов сохранено" in ru["summary"] and "сақталған санақ парақтары" in kk["summary"]
        english = re.compile(r"\b(sheets|batches|alerts|never|synced|Tablet|Institution|Nothing|No USB)\b")
        text = re.sub(r"<[^>]*>", " ", "".join((*ru.values(), *kk.values())))  # what a reader sees
        assert not english.search(text), text
    finally:
        await viewer.close()


# ---- one real browser: log in, choose Қазақша, the page and the live badge follow ----------------------------


def kazakh_in_chromium(driver: Any, url: str) -> dict[str, str]:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def wait(condition: Any) -> Any:  # a page being replaced by the next one is retried, not an error
        ignored = (NoSuchElementException, StaleElementReferenceException)
        return WebDriverWait(driver, 10, poll_frequency=0.1, ignored_exceptions=ignored).until(condition)

    driver.get(url + "/staff/login")
    driver.find_element("css selector", "#language-form button[value='en']").click()
    wait(lambda d: d.find_element("tag name", "html").get_attribute("lang") == "en")
    driver.find_element("name", "username").send_keys("viewer")
    driver.find_element("name", "password").send_keys(PASSWORD)
    driver.find_element("css selector", "#login-form button").click()
    wait(lambda d: d.find_element("id", "live-state").text == "live")
    driver.find_element("css selector", "#language-form button[value='kk']").click()
    wait(lambda d: d.find_element("tag name", "html").get_attribute("lang") == "kk")
    wait(lambda d: d.find_element("id", "live-state").text == "тікелей")
    driver.save_screenshot("/tmp/staff-dashboard-kk.png")
    return {
        "lang": driver.find_element("tag name", "html").get_attribute("lang"),
        "nav": driver.find_element("css selector", "header nav").text,
        "badge": driver.find_element("id", "live-state").text,
        "url": driver.current_url,
    }


async def test_chromium_switches_the_dashboard_to_kazakh(world: World, tmp_path: Path) -> None:
    if not chromium_available():
        pytest.fail("headless Chromium is needed: apt-get install chromium chromium-driver (make setup)")
    gateway = await start(world, tmp_path, staff=staff_config(language="ru"))
    driver = await asyncio.to_thread(chromium, tmp_path / "chromium-profile")
    try:
        driver.set_page_load_timeout(15)
        seen = await asyncio.to_thread(kazakh_in_chromium, driver, gateway.url)
    finally:
        await asyncio.to_thread(driver.quit)
        await gateway.stop()
    assert seen["lang"] == "kk" and seen["badge"] == "тікелей" and seen["url"].endswith("/staff/")
    assert "Қабылдау-беру актілері" in seen["nav"] and "Custody" not in seen["nav"]
    assert gateway.staff_rows("SELECT language FROM users WHERE username = 'viewer'") == [("kk",)]


async def test_dates_on_pages_are_local_in_russian(gw: StaffGateway, admin) -> None:
    assert (await switch(admin, "ru"))[0] == 303
    _, html, _ = await admin.get("/staff/")
    assert re.search(r'<span id="generated">\d\d\.\d\d\.20\d\d \d\d:\d\d:\d\d</span>', html)


async def test_import_refusals_are_in_the_readers_language(gw: StaffGateway, admin) -> None:
    bad = LIST_HEADER + "AB-000001,AB-000001/00009,2026-09-20,Оспанов,Ерлан,,2999-01-01,Есіл\n"
    status, html = await upload(admin, list_csv("AB-000001", range(1, 3)) + bad[len(LIST_HEADER):].encode())
    assert status == 200
    assert "туған күні тізім күнінен кейін немесе 1880 жылдан бұрын" in html
    assert "2 жол оқылды" not in html and "3 жол оқылды, импортталды: 2, қабылданбады: 1." in html
    status, html = await upload(admin, b"surname;nonsense\n")
    assert status == 400 and "белгісіз бағандар: nonsense" in html and "жетіспейтін" not in html
