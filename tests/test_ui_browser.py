"""kinema ui end to end in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Opens the page, types a prompt, clicks Generate, waits until the ``<video>`` has loaded a clip with
a duration > 0, and saves a screenshot; then checks that errors (a bad upload, a refused prompt)
are readable in the page, and that the page asked nothing of any other host (no CDN, no telemetry).

Skips when ``/usr/bin/chromium`` (or ``$KINEMA_CHROMIUM``) is missing, unless ``KINEMA_REQUIRE_BROWSER`` is set (CI sets it,
so there the test fails instead of skipping). ``scripts/install_browser.sh`` installs Chromium.
Screenshots go to the test's tmp folder, and also to ``$KINEMA_UI_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = Path(os.environ.get("KINEMA_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
REQUIRED = bool(os.environ.get("KINEMA_REQUIRE_BROWSER"))
GENERATION_TIMEOUT_MS = 120_000
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")  # pandas 3 notes inside Gradio

if not CHROMIUM.exists():
    if REQUIRED:
        pytest.fail(f"KINEMA_REQUIRE_BROWSER is set but {CHROMIUM} is missing: run scripts/install_browser.sh", pytrace=False)
    pytest.skip(f"{CHROMIUM} not found (install it with scripts/install_browser.sh); set KINEMA_REQUIRE_BROWSER=1 to fail instead", allow_module_level=True)

from playwright.sync_api import BrowserContext, Page, sync_playwright  # noqa: E402

from kinema.ui.app import AppOptions, launch_app  # noqa: E402
from kinema.ui.clip import StudioModel  # noqa: E402
from kinema.ui.provenance import SafetyHooks, load_safety  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _safety() -> SafetyHooks:
    """The installed kinema.safety hooks; at least the real moderator, so refusals are tested in the page."""
    hooks = load_safety()
    if hooks.check_prompt is None:
        from kinema.safety.moderation import check_prompt

        hooks = SafetyHooks(check_prompt=check_prompt)
    return hooks


@pytest.fixture(scope="module")
def app_url(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KINEMA_C2PA_DIR", str(tmp_path_factory.mktemp("c2pa")))  # a throwaway signing chain
        options = AppOptions(out_dir=tmp_path_factory.mktemp("ui-out"), safety=_safety())
        demo, url = launch_app(StudioModel.load(tiny_model_dir), options, host="127.0.0.1", port=_free_port(), block=False)
        try:
            yield url
        finally:
            demo.close()


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 1100},
        )
        try:
            yield context
        finally:
            context.close()


def _screenshot(page: Page, path: Path) -> Path:
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("KINEMA_UI_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    return path


def _open(browser: BrowserContext, url: str) -> tuple[Page, list[str]]:
    """A page on the app, recording every request that goes to another host."""
    page = browser.new_page()
    host = urlparse(url).netloc
    foreign: list[str] = []
    page.on("request", lambda r: foreign.append(r.url) if urlparse(r.url).scheme in ("http", "https", "ws", "wss") and urlparse(r.url).netloc != host else None)
    page.goto(url)
    page.wait_for_selector("#prompt textarea", timeout=60_000)
    return page, foreign


def _status(page: Page, text: str) -> str:
    page.wait_for_function("t => (document.querySelector('#status') || {}).innerText?.includes(t)", arg=text, timeout=GENERATION_TIMEOUT_MS)
    return page.locator("#status").inner_text()


def test_generate_plays_in_the_page(browser: BrowserContext, app_url: str, tmp_path: Path) -> None:
    page, foreign = _open(browser, app_url)
    codecs = page.evaluate("""() => { const v = document.createElement('video');
        return {h264: v.canPlayType('video/mp4; codecs="avc1.42E01E"'), vp9: v.canPlayType('video/webm; codecs="vp9"')}; }""")
    print("chromium canPlayType:", json.dumps(codecs))
    assert codecs["vp9"] == "probably"

    page.fill("#prompt textarea", "a red ball moves left on a dark background")
    page.fill("#seed input", "5")
    page.click("#generate")
    page.wait_for_function(
        "() => { const v = document.querySelector('#result video'); return !!v && v.readyState >= 2 && v.duration > 0; }",
        timeout=GENERATION_TIMEOUT_MS,
    )
    video = page.evaluate("""() => { const v = document.querySelector('#result video');
        return {src: v.currentSrc, duration: v.duration, width: v.videoWidth, height: v.videoHeight, error: v.error && v.error.code}; }""")
    assert video["error"] is None and video["src"].endswith(".webm")
    assert video["duration"] == pytest.approx(9 / 16, abs=0.02) and (video["width"], video["height"]) == (32, 32)
    assert "Made 9 frames at 32x32" in _status(page, "seed 5")
    page.wait_for_selector("#history img", timeout=30_000)
    assert page.locator("#history img").count() == 1
    provenance = page.locator("#provenance").inner_text()
    assert "generation" in provenance and "Content credentials" in provenance
    downloads = page.locator("#downloads").inner_text().replace("\n", "")
    assert "clip.mp4" in downloads and "clip.webm" in downloads and "settings.json" in downloads
    assert "no refiner" in (page.get_attribute("#refine", "title") or "")  # the tooltip on the disabled checkbox
    assert page.locator("#refine input[type=checkbox]").is_disabled()
    shot = _screenshot(page, tmp_path / "ui-t2v.png")
    assert shot.stat().st_size > 10_000

    # a second clip joins the history; clicking the first one plays it again
    page.fill("#seed input", "6")
    page.click("#generate")
    page.wait_for_function("() => document.querySelectorAll('#history img').length === 2", timeout=GENERATION_TIMEOUT_MS)
    page.wait_for_function("src => document.querySelector('#result video').currentSrc !== src", arg=video["src"], timeout=30_000)
    assert "seed 6" in page.locator("#status").inner_text()
    page.locator("#history img").nth(1).click()  # newest first: the second thumbnail is clip #1
    page.wait_for_function("src => document.querySelector('#result video').currentSrc === src", arg=video["src"], timeout=30_000)
    assert "Showing clip #1: t2v, seed 5" in _status(page, "Showing clip #1")
    assert foreign == [], f"the page contacted other hosts: {foreign}"


def test_errors_are_shown_in_the_page(browser: BrowserContext, app_url: str, tmp_path: Path) -> None:
    page, foreign = _open(browser, app_url)
    page.fill("#prompt textarea", "a gory massacre in the street")
    page.click("#generate")
    assert "Refused (violence)" in _status(page, "Refused")
    assert page.locator("#status [role=alert]").count() == 1

    bad = tmp_path / "holiday.png"
    bad.write_text("this is not an image")
    page.get_by_label("Image to video").check()
    page.wait_for_selector("#image input[type=file]", state="attached", timeout=30_000)
    page.set_input_files("#image input[type=file]", str(bad))
    assert "could not be read" in _status(page, "holiday.png")
    page.fill("#prompt textarea", "a red ball rolls away")
    page.click("#generate")
    text = _status(page, "The start image 'holiday.png' could not be read")
    assert ".png, .jpg" in text
    assert page.locator("#result video").count() == 0  # nothing was generated
    _screenshot(page, tmp_path / "ui-error.png")
    assert foreign == [], f"the page contacted other hosts: {foreign}"
