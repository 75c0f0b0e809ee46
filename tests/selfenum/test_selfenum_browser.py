
"""A respondent in a real headless Chromium (selenium; Debian's chromium and chromedriver, nothing downloaded).

Code -> Kazakh -> a required field left empty shows the error in Kazakh with a
working link -> fill, save -> resume in a new browser session -> check
answers -> submit -> confirmation with the census receive time. Then the sheet
is in the gateway's store and none of the web service's files holds the
planted name. Fails (never skips) when Chromium is missing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.staff_browser import chromium, chromium_available

from .bed import ANSWERS, INSTITUTION, WEB_ID, Gateway, Web, files_under

ENTRY1 = f"{INSTITUTION}/00001"
PLANTED = "Жұмабаева"


@pytest.fixture
def browsers(tmp_path: Path) -> Iterator[list[Any]]:
    if not chromium_available():
        pytest.fail("headless Chromium is needed: apt-get install chromium chromium-driver (make setup)")
    drivers = [chromium(tmp_path / f"profile-{i}") for i in range(2)]
    for d in drivers:
        d.set_page_load_timeout(15)
    yield drivers
    for d in drivers:
        d.quit()


def _fill(driver: Any, fields: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    for name, value in fields.items():
        radio = driver.find_elements(By.ID, f"{name}-{value}")
        if radio:
            radio[0].click()
            continue
        element = driver.find_element(By.NAME, name)
        element.clear()
        element.send_keys(value)


def _click_and_wait(driver: Any, element: Any) -> None:
    """Click, then wait until the old document is gone (a form post navigates)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    element.click()

    def gone(_driver: Any) -> bool:
        # selenium's staleness_of, plus chromedriver's other answer for a node of a document being replaced
        # mid-navigation ("Node with given id does not belong to the document"): that node is gone too
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise
        return False

    WebDriverWait(driver, 10, poll_frequency=0.05).until(gone)


def _button(driver: Any, value: str) -> None:
    from selenium.webdriver.common.by import By

    _click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, f'button[value="{value}"]'))


def first_session(driver: Any, url: str, code: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    seen: dict[str, Any] = {}
    driver.get(url + "/")
    _click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Русский"))
    seen["ru_heading"] = driver.find_element(By.TAG_NAME, "h1").text
    driver.find_element(By.ID, "code").send_keys(code.lower())
    _click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form button"))
    _click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Қазақша"))  # switch to Kazakh on the question page
    seen["lang"] = driver.find_element(By.TAG_NAME, "html").get_attribute("lang")
    _fill(driver, {"given_name": ANSWERS["name"]["given_name"]})  # surname left empty
    _button(driver, "next")
    summary = driver.find_element(By.CSS_SELECTOR, ".error-summary a")
    seen["summary"] = summary.text
    seen["title"] = driver.title
    summary.click()
    seen["focused"] = driver.switch_to.active_element.get_attribute("id")
    seen["field_error"] = driver.find_element(By.ID, "surname-error").text
    _fill(driver, {"surname": PLANTED, "patronymic": ANSWERS["name"]["patronymic"]})
    _button(driver, "next")
    _fill(driver, ANSWERS["about"])
    _button(driver, "save")
    seen["saved"] = driver.find_element(By.TAG_NAME, "h1").text
    return seen


def second_session(driver: Any, url: str, code: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    seen: dict[str, Any] = {}
    driver.get(url + "/language/kk?next=/")
    driver.find_element(By.ID, "code").send_keys(code)
    _click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form button"))
    seen["resumed_at"] = driver.current_url.removeprefix(url)
    for slug in ("origin", "status", "address"):
        _fill(driver, ANSWERS[slug])
        _button(driver, "next")
    seen["check_url"] = driver.current_url.removeprefix(url)
    seen["check_text"] = driver.find_element(By.TAG_NAME, "main").text
    _click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/submit'] button"))
    seen["done_url"] = driver.current_url.removeprefix(url)
    seen["done_text"] = driver.find_element(By.TAG_NAME, "main").text
    return seen


async def test_a_respondent_in_chromium(site: Web, gw: Gateway, codes: dict[str, str], config: Any,
                                       browsers: list[Any]) -> None:
    first = await asyncio.to_thread(first_session, browsers[0], site.url, codes[ENTRY1])
    assert first["ru_heading"] == "Заполните переписной лист онлайн"
    assert first["lang"] == "kk"
    assert first["summary"] == "Тегіңізді енгізіңіз" and first["field_error"].endswith("Тегіңізді енгізіңіз")
    assert first["title"].startswith("Қате:")
    assert first["focused"] == "surname"
    assert first["saved"] == "Жауаптарыңыз сақталды"

    second = await asyncio.to_thread(second_session, browsers[1], site.url, codes[ENTRY1])
    assert second["resumed_at"] == "/q/origin"
    assert second["check_url"] == "/q/check" and PLANTED in second["check_text"] and "Жесір" in second["check_text"]
    assert second["done_url"] == "/done"
    assert "Халық санағы деректерінің базасына" in second["done_text"] and "Астана уақыты" in second["done_text"]

    (body,) = gw.rows("SELECT s.body FROM sheets s JOIN batches b ON b.id = s.batch_id WHERE b.road = ?",
                      f"web:{WEB_ID}")[0]
    assert json.loads(body)["persons"][0]["surname"] == PLANTED
    await site.stop()
    for f in files_under(config.state_dir):
        assert PLANTED.encode() not in f.read_bytes(), f
