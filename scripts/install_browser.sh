#!/usr/bin/env bash
# Install Debian's Chromium for the web UI's browser test (tests/test_ui_browser.py).
# Idempotent: does nothing when /usr/bin/chromium exists. Uses sudo only when not root.
# Playwright drives this system browser (executable_path=/usr/bin/chromium); `playwright install`
# is never run, because it downloads a browser build of its own.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    echo "install_browser: $("$CHROMIUM" --version 2>/dev/null || echo chromium) already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: error: $CHROMIUM is missing and apt-get is not available; install Chromium by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install_browser: error: not root and sudo is not available; run as root: apt-get install -y chromium" >&2
        exit 1
    fi
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "install_browser: installing Debian's chromium with apt-get"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
if [ ! -x "$CHROMIUM" ]; then
    echo "install_browser: error: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
echo "install_browser: $("$CHROMIUM" --version 2>/dev/null) installed"
