#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are installed for the web chat's browser tests
# (tests/test_webchat_browser.py). Debian/Ubuntu: installs the `chromium` and
# `chromium-driver` packages with apt-get when either is missing (as root, or with sudo).
set -u

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium/chromedriver are missing and apt-get is not available: install Chromium and" \
       "its chromedriver yourself; the browser tests need them" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "chromium/chromedriver are missing; run as root: apt-get install -y chromium chromium-driver" >&2
    exit 0
  fi
fi
echo "installing chromium and chromium-driver (browser tests)"
$SUDO apt-get update -qq || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver \
  || echo "could not install chromium/chromium-driver: the browser tests will say so" >&2
