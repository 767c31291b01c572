"""The web chat in headless Chromium when the server enforces auth (the token prompt, a refused
token, the token kept in localStorage and never put in a URL but the socket's), and its
reconnect with backoff when the server goes away and comes back. The servers are the editor
app `nodetool serve` runs, built in this process (so one can be stopped and restarted on the
same port); one browser for the module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from nodetool.api.apps import create_editor_app
from tests.support.browser import chromium, console_errors, wait_for
from tests.support.servers import ServerThread, free_port
from tests.support.settings import stub_settings

pytestmark = pytest.mark.browser

TOKEN = "webchat-browser-token-0123456789"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def auth_server(openai_stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The app `nodetool serve` runs, with AUTH_PROVIDER=static, in this process."""
    home = tmp_path_factory.mktemp("webchat-auth")
    settings = stub_settings(openai_stub.url, home, auth_provider="static", worker_auth_token=TOKEN)
    with ServerThread(create_editor_app(settings)) as server:
        yield server


def _q(driver: Any, testid: str) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def _status(driver: Any) -> str:
    return _q(driver, "connection-status")[0].get_attribute("data-state")


def _dialog_open(driver: Any) -> bool:
    return bool(driver.execute_script("return document.getElementById('token-dialog').open"))


def _send(driver: Any, text: str) -> Any:
    before = len(_q(driver, "assistant-message"))
    _q(driver, "message-input")[0].send_keys(text, Keys.ENTER)
    wait_for(lambda: len(_q(driver, "assistant-message")) > before, what="a reply")
    reply = _q(driver, "assistant-message")[-1]
    wait_for(lambda: not _q(driver, "stop")[0].is_displayed(), what="the turn to end")
    return reply


def _unauthorized(message: str) -> bool:
    """The console lines a refused token is expected to leave: the browser's own 401 notes."""
    return "401" in message and "Failed to load resource" in message


def test_token_prompt_refused_token_and_connect(browser: Any, auth_server: ServerThread) -> None:
    browser.get(auth_server.url + "/")
    wait_for(lambda: _dialog_open(browser), what="the token prompt")
    assert _q(browser, "token-dialog")[0].is_displayed()
    assert "needs a token" in browser.find_element(By.ID, "token-heading").text
    wait_for(lambda: _status(browser) == "refused", what="the socket's 1008")

    _q(browser, "token-input")[0].send_keys("wrong-token", Keys.ENTER)
    reason = wait_for(lambda: _q(browser, "token-reason")[0].text, what="the refusal")
    assert "refused the token" in reason
    assert _dialog_open(browser)

    _q(browser, "token-input")[0].send_keys(TOKEN)
    _q(browser, "token-save")[0].click()
    wait_for(lambda: not _dialog_open(browser), what="the prompt to close")
    wait_for(lambda: _status(browser) == "open", what="the socket to connect with the token")
    assert browser.execute_script("return localStorage.getItem('nodetool.token')") == TOKEN

    reply = _send(browser, "hello with a token")
    assert "Echo: hello with a token" in reply.text
    wait_for(lambda: _q(browser, "thread-item"), what="the new thread in the list")

    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])"
    )
    assert urls and not [url for url in urls if TOKEN in url]
    assert console_errors(browser, allow=_unauthorized) == []


def test_stored_token_is_used_after_reload(browser: Any, auth_server: ServerThread) -> None:
    browser.refresh()
    wait_for(lambda: _status(browser) == "open", what="the socket to connect")
    wait_for(lambda: _q(browser, "thread-item"), what="the thread list")
    assert not _dialog_open(browser)
    assert console_errors(browser) == []


def test_reconnects_with_backoff_after_the_server_restarts(
    browser: Any, openai_stub, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = stub_settings(openai_stub.url, tmp_path_factory.mktemp("webchat-reconnect"))
    port = free_port()
    server = ServerThread(create_editor_app(settings), port=port).start()
    try:
        browser.get(server.url + "/")
        wait_for(lambda: _status(browser) == "open", what="the socket to connect")
    finally:
        server.stop()
    wait_for(lambda: _status(browser) == "closed", what="the page to notice the drop")
    text = wait_for(lambda: _q(browser, "connection-status")[0].text, what="the status text")
    assert "retrying in" in text
    server = ServerThread(create_editor_app(settings), port=port).start()
    try:
        wait_for(lambda: _status(browser) == "open", timeout=20, what="the page to reconnect")
        reply = _send(browser, "back again")
        assert "Echo: back again" in reply.text
    finally:
        server.stop()
    # While the server was down the browser logs its failed connection attempts.
    assert console_errors(browser, allow=lambda m: "WebSocket connection" in m) == []
