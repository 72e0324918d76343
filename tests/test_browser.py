"""The examples in a real browser: Debian's headless Chromium, driven by selenium
through Debian's chromedriver (nothing downloaded). lua_apps/web: the form submitted,
the answers read from the page (docs/clients/http.rst); lua_apps/webchat: two browsers
chat over WebSocket (docs/clients/websocket.rst)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_mona
from trio_mona.testing import run_lua

from .http_client import http_port

APPS = Path(__file__).resolve().parent.parent / "lua_apps"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.slow  # (starts a browser)


def _chromium(*extra: str) -> Any:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver (.ci/run has them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=900,600",
                     "--disable-dev-shm-usage", "--no-proxy-server", *extra):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = _chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def second_browser() -> Iterator[Any]:
    driver = _chromium()
    try:
        yield driver
    finally:
        driver.quit()


async def _in_thread(function: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(function)


def _text_becomes(driver: Any, element_id: str, wanted: Callable[[str], bool]) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10, poll_frequency=0.02).until(
        lambda d: wanted(d.find_element(By.ID, element_id).text)
    )
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


async def test_two_browsers_chat_over_websocket(browser: Any, second_browser: Any) -> None:
    from selenium.webdriver.common.by import By

    async with trio_mona.open_runtime(
        APPS / "webchat", settings={"HTTP.port": "0"}, data=":memory:"
    ) as runtime:
        url = f"http://127.0.0.1:{http_port(runtime)}/"

        def join(driver: Any, name: str) -> None:
            driver.get(url)
            _text_becomes(driver, "status", lambda t: t.startswith("connected"))
            driver.find_element(By.ID, "name").send_keys(name)
            driver.find_element(By.ID, "join-button").click()

        def users(driver: Any) -> str:
            return _text_becomes(driver, "users", lambda t: "ann" in t and "bob" in t)

        await _in_thread(lambda: join(browser, "ann"))
        await _in_thread(lambda: join(second_browser, "bob"))
        assert await _in_thread(lambda: users(browser)) == "ann\nbob"
        assert await _in_thread(lambda: users(second_browser)) == "ann\nbob"

        def say(driver: Any, text: str) -> float:
            field = driver.find_element(By.ID, "text")
            field.send_keys(text)
            started = time.monotonic()
            driver.find_element(By.ID, "send").click()
            return started

        started = await _in_thread(lambda: say(browser, "hello bob"))
        await _in_thread(
            lambda: _text_becomes(second_browser, "log", lambda t: "ann: hello bob" in t)
        )
        assert time.monotonic() - started < 1  # (selenium's round trips count here)
        # From the send in one page to the message in the other, by the pages' own clock.
        sent = await _in_thread(lambda: browser.execute_script("return window.lastSentAt"))
        got = await _in_thread(lambda: second_browser.execute_script("return window.lastMessageAt"))
        assert 0 <= got - sent < 200
        # onManage of each client's own writer pushes the clock every 2 s.
        status = await _in_thread(
            lambda: _text_becomes(browser, "status", lambda t: "2 online" in t)
        )
        assert status.startswith("connected · 2 online · ")
        if os.environ.get("TRIO_MONA_CHAT_SCREENSHOT"):  # (the docs' picture)
            await _in_thread(lambda: say(second_browser, "hi ann!"))
            await _in_thread(lambda: _text_becomes(browser, "log", lambda t: "bob: hi ann!" in t))
            path = os.environ["TRIO_MONA_CHAT_SCREENSHOT"]
            await _in_thread(lambda: browser.save_screenshot(path))
        # Closing one browser's page shows the leave notice in the other.
        await _in_thread(second_browser.close)  # (its window: the page goes)
        await _in_thread(lambda: _text_becomes(browser, "log", lambda t: "bob left" in t))
        assert await _in_thread(lambda: browser.find_element(By.ID, "users").text) == "ann"


async def test_the_chat_over_https_and_wss(tmp_path: Path) -> None:
    """The same page over TLS: Chromium trusts the test certificate's key (by its SPKI
    hash, verification otherwise as usual) and the page's WebSocket is ``wss://``."""
    import base64
    import hashlib

    import trustme
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from selenium.webdriver.common.by import By

    issued = trustme.CA().issue_cert("127.0.0.1")
    pem, key = tmp_path / "server.pem", tmp_path / "server.key"
    issued.private_key_pem.write_to_path(str(key))
    pem.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    public = x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes()).public_key()
    spki = public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    settings = {"HTTPS.port": "0", "HTTPS.certificate": str(pem), "HTTPS.key": str(key)}
    async with trio_mona.open_runtime(APPS / "webchat", settings=settings, data=":memory:") as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "https")
        driver = await _in_thread(lambda: _chromium(f"--ignore-certificate-errors-spki-list={pin}"))
        try:

            def chat() -> tuple[str, str, bool]:
                driver.get(f"https://127.0.0.1:{port}/")
                _text_becomes(driver, "status", lambda t: t.startswith("connected"))
                driver.find_element(By.ID, "name").send_keys("ann")
                driver.find_element(By.ID, "join-button").click()
                _text_becomes(driver, "users", lambda t: t == "ann")
                driver.find_element(By.ID, "text").send_keys("over TLS")
                driver.find_element(By.ID, "send").click()
                log = _text_becomes(driver, "log", lambda t: "ann: over TLS" in t)
                secure = driver.execute_script("return window.isSecureContext")
                return driver.execute_script("return location.protocol"), log, secure

            protocol, log, secure = await _in_thread(chat)
            assert protocol == "https:"
            assert secure is True
            assert "ann: over TLS" in log
            tls = await run_lua(
                rt,
                "for _, c in pairs(mona.clients) do "
                "if c.protocol == 'WebSocket' then return c.protocol, c.properties.tls end end",
            )
            assert tls == (b"WebSocket", b"TLSv1.3")
        finally:
            await _in_thread(driver.quit)
