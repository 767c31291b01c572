"""Headless Chromium for the web chat's browser tests (selenium + Debian's chromedriver).

`make test` installs `chromium` and `chromium-driver` (scripts/ensure_browser.sh). Without them
the tests skip with the reason, except under `CI=true`, where a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing browser fails)")
    pytest.skip(reason)


def _binaries() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        _missing("chromium and chromedriver are not installed (make test installs them)")
    return browser, driver  # type: ignore[return-value]


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A fresh headless Chromium (own profile dir) whose console log can be read."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[dev]')")
    browser, driver_path = _binaries()
    profile = tempfile.mkdtemp(prefix="nodetool-chromium-")
    options = Options()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def set_color_scheme(driver: Any, scheme: str) -> None:
    """Emulate `prefers-color-scheme: light|dark`."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )


def console_errors(driver: Any, allow: Callable[[str], bool] = lambda _: False) -> list[str]:
    """The console's SEVERE entries since the last call (uncaught errors, CSP violations,
    failed loads), minus the ones `allow` accepts."""
    entries = driver.get_log("browser")
    return [e["message"] for e in entries if e.get("level") == "SEVERE" and not allow(e["message"])]


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `check` until it returns a truthy value (returned); fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # stale elements while the page re-renders
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(
        f"timed out waiting for {what}" + (f": {last_error!r}" if last_error else "")
    )
