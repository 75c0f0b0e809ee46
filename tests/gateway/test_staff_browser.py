"""A real browser against the real gateway: headless Chromium logs in, watches a tablet sync arrive live.

Fails (never skips) when Chromium is missing: Debian ``chromium`` and
``chromium-driver`` are part of ``make setup``. A screenshot of the dashboard
is left at /tmp/staff-dashboard.png for a person to look at.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tablet.generator import KindMix, generate_sheets, tablet_profile

from .harness import World, post_batch
from .staff_browser import (
    PASSWORD,
    StaffClient,
    StaffGateway,
    chromium,
    chromium_available,
    list_csv,
    start_staff_gateway,
    upload,
)

SCREENSHOT = Path("/tmp/staff-dashboard.png")
MIX = KindMix.only(hospital=1)


@pytest.fixture
async def gw(world: World, tmp_path: Path, staff_database: str) -> AsyncIterator[StaffGateway]:
    gateway = await start_staff_gateway(world, tmp_path, database=staff_database)
    yield gateway
    await gateway.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    if not chromium_available():
        pytest.fail("headless Chromium is needed: apt-get install chromium chromium-driver (make setup)")
    driver = chromium(tmp_path / "chromium-profile")
    driver.set_page_load_timeout(15)
    yield driver
    driver.quit()


def wait_until(driver: Any, condition: Any, timeout_s: float = 10.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(condition)


def refused_without_login(driver: Any, url: str) -> None:
    driver.get(url + "/staff/")
    assert driver.current_url == url + "/staff/login"
    assert driver.find_elements("id", "login-form") and not driver.find_elements("id", "fleet-table")
    driver.get(url + "/staff/api/summary")
    assert "login required" in driver.page_source and "coverage" not in driver.page_source


def log_in_and_watch(driver: Any, url: str, code: str) -> dict[str, str]:
    driver.get(url + "/staff/login")
    driver.find_element("name", "username").send_keys("viewer")
    driver.find_element("name", "password").send_keys(PASSWORD)
    driver.find_element("css selector", "#login-form button").click()
    wait_until(driver, lambda d: d.find_elements("id", "fleet-table"))
    wait_until(driver, lambda d: d.find_element("id", "live-state").text == "live")
    driver.execute_script("window.__sameDocument = 'still here';")
    return read_state(driver, code)


READ_STATE = """
const row = document.getElementById("fleet-TAB-0001");
const bar = document.getElementById("cov-" + arguments[0]);
return {
  colour: row.dataset.colour,
  enumerated: bar.dataset.enumerated,
  listed: bar.dataset.listed,
  width: bar.querySelector("rect.bar-fg").getAttribute("width"),
  text: bar.querySelector(".cov-text").textContent,
  sheets: document.getElementById("n-sheets").textContent,
  same_document: window.__sameDocument || "",
};
"""


def read_state(driver: Any, code: str) -> dict[str, str]:
    """One consistent reading (a single script run), immune to sections being swapped meanwhile."""
    return driver.execute_script(READ_STATE, code)


def sees_the_sync(driver: Any, code: str) -> dict[str, str]:
    wait_until(driver, lambda d: read_state(d, code)["enumerated"] == "4")
    state = read_state(driver, code)
    driver.save_screenshot(str(SCREENSHOT))
    driver.find_element("css selector", "form.logout button").click()
    wait_until(driver, lambda d: d.current_url.endswith("/staff/login"))
    driver.get(driver.current_url.replace("/staff/login", "/staff/"))
    state["after_logout"] = driver.current_url
    return state


async def test_chromium_logs_in_and_sees_a_tablet_sync_arrive_live(world: World, gw: StaffGateway, browser) -> None:
    code = tablet_profile(11, "TAB-0001", MIX).institutions["hospital"].code
    admin = StaffClient(gw)
    try:
        assert await admin.login("admin") == 303
        assert (await upload(admin, list_csv(code, range(1, 9))))[0] == 200
    finally:
        await admin.close()

    await asyncio.to_thread(refused_without_login, browser, gw.url)
    before = await asyncio.to_thread(log_in_and_watch, browser, gw.url, code)
    assert before == {
        "colour": "red",
        "enumerated": "0",
        "listed": "8",
        "width": "0.00",
        "text": "0 / 8 (0.0%)",
        "sheets": "0",
        "same_document": "still here",
    }

    sheets = generate_sheets(11, 4, device_id="TAB-0001", mix=MIX)
    async with aiohttp.ClientSession() as s:
        status, _ = await post_batch(s, gw, world.batch("TAB-0001", 1, sheets), world.tablets["TAB-0001"])
    assert status == 200

    after = await asyncio.to_thread(sees_the_sync, browser, code)
    assert after == {
        "colour": "green",
        "enumerated": "4",
        "listed": "8",
        "width": "50.00",
        "text": "4 / 8 (50.0%)",
        "sheets": "4",
        "same_document": "still here",  # updated in place, not reloaded
        "after_logout": gw.url + "/staff/login",
    }
    assert await asyncio.to_thread(lambda: SCREENSHOT.stat().st_size) > 10_000
