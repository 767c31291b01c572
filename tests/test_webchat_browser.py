"""The web chat in headless Chromium against `nodetool serve` and the OpenAI-compatible stub:
streamed Markdown replies (model HTML never executed), tool cards, stop, history after a
reload, threads, pickers, a workflow run with node-by-node progress, errors in the page and a
375 px layout. One server and one browser for the module; after every test the browser's
console must hold no errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests.support.browser import chromium, console_errors, wait_for
from tests.support.servers import CliServer

pytestmark = pytest.mark.browser

GREETER = {
    "id": "greeter",
    "name": "Greeter",
    "description": "Greets whoever you name.",
    "graph": {
        "nodes": [
            {"id": "in", "type": "nodetool.input.StringInput", "data": {"name": "name"}},
            {
                "id": "times",
                "type": "nodetool.input.IntegerInput",
                "data": {"name": "times", "value": 2, "min": 1, "max": 5},
            },
            {
                "id": "fmt",
                "type": "nodetool.text.FormatText",
                "data": {"template": "Hello **{{ name }}** x{{ times }}!"},
            },
            {"id": "out", "type": "nodetool.output.StringOutput", "data": {"name": "greeting"}},
        ],
        "edges": [
            {"source": "in", "sourceHandle": "output", "target": "fmt", "targetHandle": "name"},
            {"source": "times", "sourceHandle": "output", "target": "fmt", "targetHandle": "times"},
            {"source": "fmt", "sourceHandle": "output", "target": "out", "targetHandle": "value"},
        ],
    },
}


# Injected by the test (DevTools, outside the page's CSP): records each /chat frame's kind.
FRAME_SPY = """
window.__frames = {sent: [], received: []};
const kind = (data) => (typeof data === "string" ? "text" : "binary");
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  window.__frames.sent.push(kind(data));
  return send.call(this, data);
};
const listen = WebSocket.prototype.addEventListener;
WebSocket.prototype.addEventListener = function (type, fn, options) {
  if (type !== "message") return listen.call(this, type, fn, options);
  const spy = (e) => {
    window.__frames.received.push(kind(e.data));
    fn(e);
  };
  return listen.call(this, type, spy, options);
};
"""


@pytest.fixture(scope="module")
def server(openai_stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliServer]:
    home = tmp_path_factory.mktemp("webchat")
    workflow = home / "greeter.json"
    workflow.write_text(json.dumps(GREETER), encoding="utf-8")
    env = {
        "OPENAI_BASE_URL": openai_stub.url,
        "OPENAI_API_KEY": "sk-test",
        "NODETOOL_DATA_DIR": str(home / "data"),
        "NODETOOL_CONFIG_DIR": str(home / "config"),
        "AUTH_PROVIDER": "local",
    }
    args = ("--provider", "openai", "--default-model", "stub-model", "--tools", "calculator")
    with CliServer("serve", *args, "--workflow", str(workflow), env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser(server: CliServer) -> Iterator[Any]:
    with chromium() as driver:
        driver.execute_cdp_cmd(
            "Browser.grantPermissions",
            {
                "origin": server.url,
                "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
            },
        )
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FRAME_SPY})
        driver.get(server.url + "/")
        wait_for(lambda: _status(driver) == "open", what="the socket to connect")
        yield driver


@pytest.fixture(autouse=True)
def no_console_errors(browser: Any) -> Iterator[None]:
    console_errors(browser)  # drop what earlier fixtures logged
    yield
    assert console_errors(browser) == []


# ---- page helpers ---------------------------------------------------------------------------


def _q(driver: Any, testid: str) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def _status(driver: Any) -> str:
    return _q(driver, "connection-status")[0].get_attribute("data-state")


def _type(driver: Any, text: str) -> None:
    box = _q(driver, "message-input")[0]
    for index, line in enumerate(text.split("\n")):
        if index:
            box.send_keys(Keys.SHIFT, Keys.ENTER)
        box.send_keys(line)


def _send(driver: Any, text: str, click: bool = False) -> Any:
    """Send `text` (Enter, or the send button) and return the new assistant reply element."""
    before = len(_q(driver, "assistant-message"))
    _type(driver, text)
    if click:
        _q(driver, "send")[0].click()
    else:
        _q(driver, "message-input")[0].send_keys(Keys.ENTER)
    wait_for(lambda: len(_q(driver, "assistant-message")) > before, what="a new reply")
    return _q(driver, "assistant-message")[-1]


def _idle(driver: Any, timeout: float = 15.0) -> None:
    wait_for(lambda: not _q(driver, "stop")[0].is_displayed(), timeout, "the turn to end")


def _reply_text(reply: Any) -> str:
    return " ".join(el.text for el in reply.find_elements(By.CSS_SELECTOR, ".md"))


def _thread_id(driver: Any) -> str:
    return driver.execute_script("return decodeURIComponent(location.hash.split('/')[2] || '')")


def _messages(server: CliServer, thread_id: str) -> list[dict[str, Any]]:
    return httpx.get(server.url + "/api/messages", params={"thread_id": thread_id}).json()[
        "messages"
    ]


# ---- tests ----------------------------------------------------------------------------------


def test_page_loads_with_title_favicon_and_pickers(browser: Any) -> None:
    assert browser.title == "nodetool chat"
    icon = browser.find_element(By.CSS_SELECTOR, 'link[rel="icon"]').get_attribute("href")
    assert icon.endswith("/ui/favicon.svg")
    models = [o.get_attribute("value") for o in Select(_q(browser, "model-select")[0]).options]
    assert models[0] == "" and {"stub-model", "stub-model-2"} <= set(models)  # /v1/models
    flows = [o.text for o in Select(_q(browser, "workflow-select")[0]).options]
    assert flows == ["Chat", "Workflow: Greeter"]
    assert _q(browser, "tools-button")[0].text == "Tools · 1"
    assert _q(browser, "thread-list")[0].is_displayed()


def test_streamed_markdown_reply_never_runs_model_html(browser: Any, server: CliServer) -> None:
    text = (
        '[[slow:0.12]] Hi <img src=x onerror="window.__pwned=1"> '
        "<script>window.__pwned=2</script> **bold** word\n```python\ndef f(x):\n    return x\n```"
    )
    reply = _send(browser, text)
    partials = set()
    while _q(browser, "stop")[0].is_displayed():
        partials.add(_reply_text(reply))
    _idle(browser)
    final = _reply_text(reply)
    assert final.startswith("Echo: Hi <img src=x onerror=")
    assert len({p for p in partials if p and p != final}) >= 2  # it streamed in pieces
    assert reply.find_element(By.CSS_SELECTOR, ".md strong").text == "bold"
    assert "<script>window.__pwned=2</script>" in final
    keyword = reply.find_element(By.CSS_SELECTOR, ".code code .hljs-keyword")
    assert keyword.text == "def"
    assert browser.execute_script("return window.__pwned") is None
    images = browser.find_elements(By.CSS_SELECTOR, "#messages img")
    assert {img.get_attribute("src").rsplit("/ui/", 1)[-1] for img in images} == {"favicon.svg"}
    assert browser.find_elements(By.CSS_SELECTOR, "#messages script") == []
    user = _q(browser, "user-message")[-1]
    assert "<img src=x" in user.text  # the user's own text is text too
    copy = reply.find_element(By.CSS_SELECTOR, ".code .copy")
    copy.click()
    wait_for(lambda: copy.text == "Copied", what="the copy button to confirm")
    pasted = browser.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('ERR ' + e))"
    )
    assert pasted == "def f(x):\n    return x"
    assert _q(browser, "thread-item")[0].get_attribute("aria-current") == "true"


def test_server_tool_call_is_a_collapsible_card(browser: Any) -> None:
    reply = _send(browser, 'What is 6*7? [[tool:calculator {"expression": "6*7"}]]', click=True)
    _idle(browser)
    cards = reply.find_elements(By.CSS_SELECTOR, '[data-testid="tool-call"]')
    assert len(cards) == 1
    card = cards[0]
    assert card.get_attribute("data-tool") == "calculator"
    assert card.find_element(By.CSS_SELECTOR, ".card-state").text == "done"
    assert not card.find_element(By.CSS_SELECTOR, '[data-testid="tool-result"]').is_displayed()
    card.find_element(By.TAG_NAME, "summary").click()
    assert card.find_element(By.CSS_SELECTOR, '[data-testid="tool-result"]').text == "42"
    args = json.loads(card.find_element(By.CSS_SELECTOR, '[data-testid="tool-args"]').text)
    assert args == {"expression": "6*7"}
    assert _reply_text(reply) == "Tool results: 42"


def test_stop_button_and_escape_stop_the_reply(browser: Any, server: CliServer) -> None:
    words = " ".join(f"w{i}" for i in range(40))
    for how in ("button", "escape"):
        reply = _send(browser, f"[[slow:0.1]] {words}")
        wait_for(lambda r=reply: len(_reply_text(r)) > 12, what="the first words")
        if how == "button":
            _q(browser, "stop")[0].click()
        else:
            browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        _idle(browser)
        wait_for(lambda r=reply: "Stopped." in r.text, what="the stopped note")
        shown = _reply_text(reply)
        assert shown.startswith("Echo: w0") and not shown.endswith("w39")
        assert _q(browser, "send")[0].is_displayed()
        stored = _messages(server, _thread_id(browser))[-1]
        assert stored["role"] == "assistant" and stored["content"].strip() == shown.strip()


def test_history_after_reload(browser: Any) -> None:
    users = [el.text for el in _q(browser, "user-message")]
    replies = len(_q(browser, "assistant-message"))
    thread_id = _thread_id(browser)
    browser.refresh()
    wait_for(lambda: len(_q(browser, "user-message")) == len(users), what="the history")
    assert [el.text for el in _q(browser, "user-message")] == users
    assert len(_q(browser, "assistant-message")) == replies
    assert _thread_id(browser) == thread_id
    card = _q(browser, "tool-call")[0]
    card.find_element(By.TAG_NAME, "summary").click()
    assert card.find_element(By.CSS_SELECTOR, '[data-testid="tool-result"]').text == "42"
    assert (
        _q(browser, "assistant-message")[0].find_element(By.CSS_SELECTOR, "strong").text == "bold"
    )
    current = browser.find_element(By.CSS_SELECTOR, '[data-testid="thread-item"][aria-current]')
    assert current.get_attribute("data-thread-id") == thread_id
    wait_for(lambda: _status(browser) == "open", what="the socket to reconnect")


def test_threads_new_rename_and_delete(browser: Any, server: CliServer) -> None:
    _q(browser, "new-thread")[0].click()
    wait_for(lambda: _q(browser, "user-message") == [], what="an empty chat")
    assert browser.find_element(By.ID, "thread-title").text == "New chat"
    _send(browser, "A fresh thread")
    _idle(browser)
    thread_id = _thread_id(browser)
    item = _q(browser, "thread-item")[0]
    assert item.get_attribute("data-thread-id") == thread_id
    assert "A fresh thread" in item.text
    item.find_element(By.CSS_SELECTOR, '[data-testid="thread-rename"]').click()
    box = _q(browser, "thread-title-input")[0]
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("Renamed chat", Keys.ENTER)
    wait_for(lambda: "Renamed chat" in _q(browser, "thread-item")[0].text, what="the new title")
    thread = httpx.get(f"{server.url}/api/threads/{thread_id}").json()
    assert thread["title"] == "Renamed chat"
    assert browser.find_element(By.ID, "thread-title").text == "Renamed chat"
    _q(browser, "thread-item")[0].find_element(
        By.CSS_SELECTOR, '[data-testid="thread-delete"]'
    ).click()
    _q(browser, "thread-delete-confirm")[0].click()
    wait_for(
        lambda: all(
            i.get_attribute("data-thread-id") != thread_id for i in _q(browser, "thread-item")
        ),
        what="the thread to leave the list",
    )
    assert httpx.get(f"{server.url}/api/threads/{thread_id}").status_code == 404
    assert browser.find_element(By.ID, "thread-title").text == "New chat"


def test_model_and_tools_pickers_shape_the_request(browser: Any, openai_stub) -> None:
    Select(_q(browser, "model-select")[0]).select_by_value("stub-model-2")
    _q(browser, "tools-button")[0].click()
    option = wait_for(lambda: [o for o in _q(browser, "tool-option") if o.is_displayed()])[0]
    assert option.get_attribute("value") == "calculator" and option.is_selected()
    option.click()
    assert _q(browser, "tools-button")[0].text == "Tools"
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)  # closes the popover
    reply = _send(browser, 'No tools now [[tool:calculator {"expression": "1+1"}]]')
    _idle(browser)
    request = openai_stub.requests[-1]
    assert request["model"] == "stub-model-2"
    assert not request.get("tools")
    assert reply.find_elements(By.CSS_SELECTOR, '[data-testid="tool-call"]') == []
    assert "stub-model-2 · openai" in reply.find_element(By.CSS_SELECTOR, ".reply-meta").text
    _q(browser, "tools-button")[0].click()
    browser.find_element(By.ID, "tools-reset").click()
    assert _q(browser, "tools-button")[0].text == "Tools · 1"
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    Select(_q(browser, "model-select")[0]).select_by_value("")


def test_workflow_run_shows_node_progress_and_output(browser: Any) -> None:
    browser.execute_script(
        """
        window.__nodeLog = [];
        new MutationObserver((records) => {
          for (const r of records) {
            const nodes = r.type === 'attributes' ? [r.target] : [...r.addedNodes];
            for (const n of nodes) {
              if (n.nodeType === 1 && n.dataset.testid === 'workflow-node') {
                window.__nodeLog.push([n.dataset.nodeId, n.dataset.state]);
              }
            }
          }
        }).observe(document.getElementById('messages'), {
          subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'],
        });
        """
    )
    Select(_q(browser, "workflow-select")[0]).select_by_value("greeter")
    assert not _q(browser, "model-select")[0].is_enabled()
    times = browser.find_element(By.CSS_SELECTOR, '[data-param="times"]')
    times.send_keys(Keys.CONTROL, "a")
    times.send_keys("3")
    reply = _send(browser, "Ada")
    _idle(browser)
    run = reply.find_element(By.CSS_SELECTOR, '[data-testid="workflow-run"]')
    assert (
        run.find_element(By.CSS_SELECTOR, ".card-state").get_attribute("data-state") == "completed"
    )
    states = {
        n.get_attribute("data-node-id"): n.get_attribute("data-state")
        for n in run.find_elements(By.CSS_SELECTOR, '[data-testid="workflow-node"]')
    }
    assert states == {
        "in": "completed",
        "times": "completed",
        "fmt": "completed",
        "out": "completed",
    }
    log = browser.execute_script("return window.__nodeLog")
    fmt = [state for node, state in log if node == "fmt"]
    assert fmt == ["waiting", "running", "completed"]  # live, node by node
    order = [node for node, state in log if state == "running"]
    assert order.index("fmt") > order.index("in") and order.index("out") > order.index("fmt")
    assert _reply_text(reply) == "Hello Ada x3!"
    assert reply.find_element(By.CSS_SELECTOR, ".md strong").text == "Ada"
    assert "greeting" in run.get_attribute("textContent")
    Select(_q(browser, "workflow-select")[0]).select_by_value("")
    assert _q(browser, "model-select")[0].is_enabled()


def test_upstream_failure_is_shown_in_words(browser: Any) -> None:
    reply = _send(browser, "[[error:500]] please fail")
    _idle(browser)
    error = reply.find_element(By.CSS_SELECTOR, '[data-testid="error"]')
    assert "stub upstream error" in error.text
    assert error.is_displayed()


def test_unknown_thread_is_an_alert_in_words(browser: Any) -> None:
    browser.execute_script("location.hash = '#/thread/no-such-thread'")
    alert = wait_for(
        lambda: [e for e in _q(browser, "error") if "does not exist" in e.text], what="the alert"
    )[0]
    assert alert.is_displayed()
    wait_for(lambda: browser.find_element(By.ID, "thread-title").text == "New chat")
    alert.find_element(By.TAG_NAME, "button").click()  # dismiss
    assert not [e for e in _q(browser, "error") if "does not exist" in e.text]
    expected = console_errors(browser, allow=lambda m: "no-such-thread" in m and "404" in m)
    assert expected == []


def test_narrow_screen_layout(browser: Any) -> None:
    browser.set_window_size(375, 812)
    try:
        width = browser.execute_script("return document.documentElement.clientWidth")
        sidebar = browser.find_element(By.ID, "sidebar")
        wait_for(lambda: sidebar.rect["x"] + sidebar.rect["width"] <= 0, what="the sidebar to hide")
        box = _q(browser, "message-input")[0]
        assert box.is_displayed() and box.rect["x"] + box.rect["width"] <= width
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        browser.find_element(By.ID, "menu").click()
        wait_for(lambda: sidebar.rect["x"] >= 0, what="the sidebar to slide in")
        assert _q(browser, "new-thread")[0].is_displayed()
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        wait_for(lambda: sidebar.rect["x"] + sidebar.rect["width"] <= 0, what="the sidebar to hide")
    finally:
        browser.set_window_size(1280, 900)


def test_chat_frames_are_messagepack_binary(browser: Any) -> None:
    frames = browser.execute_script("return window.__frames")
    assert frames["sent"] and set(frames["sent"]) == {"binary"}
    assert len(frames["received"]) > 10 and set(frames["received"]) == {"binary"}
