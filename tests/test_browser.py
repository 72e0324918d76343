"""The web example in a real browser: Debian's headless Chromium, driven by selenium
through Debian's chromedriver (nothing downloaded), loads lua_apps/web, submits the
form, and reads the answers from the page (docs/clients/http.rst)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_mona

from .http_client import http_port

APPS = Path(__file__).resolve().parent.parent / "lua_apps"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.slow  # (starts a browser)


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver (.ci/run installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=900,600",
                     "--disable-dev-shm-usage", "--no-proxy-server"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


async def _in_thread(function: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(function)


def _text_becomes(driver: Any, element_id: str, wanted: Callable[[str], bool]) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: wanted(d.find_element(By.ID, element_id).text))
    return str(driver.find_element(By.ID, element_id).text)


async def test_the_web_example_in_headless_chromium(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    settings = {"HTTP.port": "0"}
    async with trio_mona.open_runtime(APPS / "web", settings=settings, data=":memory:") as runtime:
        url = f"http://127.0.0.1:{http_port(runtime)}/"
        await _in_thread(lambda: browser.get(url))
        assert await _in_thread(lambda: browser.find_element(By.ID, "visitor").text) == "stranger"
        # The JSON API the page GETs fills in the time.
        shown = await _in_thread(lambda: _text_becomes(browser, "time", lambda t: "T" in t))
        assert shown.endswith("Z")

        def greet(name: str) -> None:
            field = browser.find_element(By.ID, "name")
            field.clear()
            field.send_keys(name)
            browser.find_element(By.ID, "greet").click()

        await _in_thread(lambda: greet("Ada Lovelace"))
        answer = await _in_thread(lambda: _text_becomes(browser, "answer", bool))
        assert answer == "Hello Ada Lovelace!"
        if os.environ.get("TRIO_MONA_SCREENSHOT"):  # (the docs' picture)
            await _in_thread(lambda: browser.save_screenshot(os.environ["TRIO_MONA_SCREENSHOT"]))
        cookie = await _in_thread(lambda: browser.get_cookie("name"))
        assert cookie["value"] == "Ada-Lovelace"
        await _in_thread(lambda: greet("<script>"))
        refused = await _in_thread(
            lambda: _text_becomes(browser, "answer", lambda t: "Refused" in t)
        )
        assert refused == "Refused (500)"
        # The template shows the name the cookie holds, and counts the visits.
        await _in_thread(lambda: browser.get(url))
        assert (
            await _in_thread(lambda: browser.find_element(By.ID, "visitor").text) == "Ada-Lovelace"
        )
        assert await _in_thread(lambda: browser.find_element(By.ID, "visits").text) == "2"
