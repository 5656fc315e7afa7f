"""End to end: the app served on localhost, every page opened in headless Chromium.

Checks that each page draws its Plotly charts and shows no exception, no error box and no JavaScript error,
and saves a screenshot of each page (to ``$MONAI_ILM_SCREENSHOTS`` if set, e.g. ``docs/screenshots`` to
refresh the README's pictures, else to a temporary folder).

Needs the ``selenium`` package, Chromium and its driver (Debian: ``apt-get install -y chromium
chromium-driver``); skipped with the reason when one is missing. Nothing is downloaded at test time: the
driver is given explicitly, so Selenium Manager never runs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dashboard.sample import SampleLayout
from tests.helpers import serve_until_healthy

from .conftest import APP

pytestmark = pytest.mark.browser

# url path -> (page title, Plotly charts drawn with the sample results)
PAGES = {
    "": ("Results overview", 1),
    "label-efficiency": ("Label efficiency", 1),
    "probing": ("Layer-wise probing", 1),
    "feature-reuse": ("CKA feature reuse", 2),
    "findings": ("KS distance and findings", 1),
    "embeddings": ("Embedding explorer", 1),
    "training": ("Training curves", 1),
    "runs": ("Run browser", 1),
}
# the same pages with demo-shaped results (tests/dashboard/conftest.py ``demo_like``), or the real output of
# ``python -m monai_ilm demo`` when $MONAI_ILM_DEMO_RESULTS points at its results folder
DEMO_PAGES = {
    **PAGES,
    "": ("Results overview", 0),
    "label-efficiency": ("Label efficiency", 1),
    "probing": ("Layer-wise probing", 0),
    "findings": ("KS distance and findings", 2),
    "embeddings": ("Embedding explorer", 0),  # the demo_like fixture has none; a real demo's probing cells write them
}
SCREENSHOT_NAMES = {"": "overview"}
# Console messages that are not errors of the app, each with the reason; anything else fails the test.
BENIGN_CONSOLE = (
    # Streamlit probes its own endpoints relative to the page path (e.g. /runs/_stcore/health) and gets 404s
    ("network", "/_stcore/"),
)
WINDOW = (1400, 1250)
PAGE_TIMEOUT = 45.0
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def _find(env: str, names: tuple[str, ...], extra: tuple[str, ...] = ()) -> str | None:
    if os.environ.get(env):
        return os.environ[env] if Path(os.environ[env]).is_file() else None
    for name in names:
        if found := shutil.which(name):
            return found
    return next((p for p in extra if Path(p).is_file()), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def driver():
    """Headless Chromium via Selenium (skips with the reason when something is missing)."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chrome = _find("CHROME_BIN", ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"))
    if chrome is None:
        pytest.skip("Chromium not found (apt-get install -y chromium chromium-driver, or set CHROME_BIN)")
    chromedriver = _find("CHROMEDRIVER", ("chromedriver",), ("/usr/lib/chromium/chromedriver",))
    if chromedriver is None:
        pytest.skip("chromedriver not found (apt-get install -y chromium-driver, or set CHROMEDRIVER)")
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    profile = tempfile.mkdtemp(prefix="monai-ilm-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    browser.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def server(sample: SampleLayout, tmp_path_factory: pytest.TempPathFactory):
    """``streamlit run dashboard/app.py -- --results <sample>`` on a free localhost port; stopped afterwards."""
    yield from _serve(sample.results_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def demo_server(demo_like: Path, tmp_path_factory: pytest.TempPathFactory):
    """The app on demo results: ``$MONAI_ILM_DEMO_RESULTS`` (real demo output) or the ``demo_like`` fixture."""
    real = os.environ.get("MONAI_ILM_DEMO_RESULTS")
    yield from _serve(Path(real) if real else demo_like, tmp_path_factory)


def _serve(results: Path, tmp_path_factory: pytest.TempPathFactory):
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "MONAI_ILM_RESULTS"}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--",
        "--results",
        str(results),
    ]
    yield from serve_until_healthy(command, APP.parents[1], env, log, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("MONAI_ILM_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wait_for_page(browser, title: str, charts: int) -> None:
    """Wait until the page's title is shown, its charts are drawn and the script has finished."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + PAGE_TIMEOUT
    state = ""
    while time.monotonic() < deadline:
        titles = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h1")]
        drawn = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg')
        plots = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"] .js-plotly-plot')
        running = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        state = f"titles={titles}, charts={len(plots)} (drawn svg layers: {len(drawn)}), running={bool(running)}"
        if any(title in t for t in titles) and len(plots) >= charts and (charts == 0 or drawn) and not running:
            time.sleep(0.8)  # let the last chart finish its transition before the screenshot
            return
        time.sleep(0.25)
    raise AssertionError(f"page {title!r} not ready after {PAGE_TIMEOUT} s: {state}")


def _page_errors(browser, base_url: str) -> list[str]:
    """Exceptions and error boxes in the page, and JavaScript errors in the console."""
    from selenium.webdriver.common.by import By

    errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')]
    errors += [e.text for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]')]
    for entry in browser.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        message = entry["message"]
        if any(entry.get("source") == source and part in message for source, part in BENIGN_CONSOLE):
            continue
        errors.append(f"console: {message}")  # includes any request to an online host (none is allowed)
    return errors


def _save(browser, path: Path) -> None:
    """A PNG screenshot, reduced to a 256-colour palette (about 100 KB) when Pillow is available."""
    browser.save_screenshot(str(path))
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def _render_and_check(driver, server: str, url_path: str, pages: dict, path: Path) -> None:
    """Open one page, wait for its title and charts, keep a screenshot and fail on any browser error."""
    title, charts = pages[url_path]
    driver.get(f"{server}/{url_path}")
    _wait_for_page(driver, title, charts)
    _save(driver, path)
    assert path.stat().st_size > 10_000
    assert _page_errors(driver, server) == []


@pytest.mark.parametrize("url_path", PAGES, ids=lambda p: p or "overview")
def test_page_renders_in_chromium(url_path: str, driver, server: str, screenshot_dir: Path) -> None:
    path = screenshot_dir / f"{SCREENSHOT_NAMES.get(url_path, url_path)}.png"
    _render_and_check(driver, server, url_path, PAGES, path)


def _traces(browser) -> list[dict]:
    """``{"x", "text"}`` of every trace of every Plotly chart in the page (``_fullData``: arrays decoded)."""
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(p => (p._fullData || []).map("
        "t => ({x: Array.from(t.x || []), text: (t.text || []).flat ? (t.text || []).flat() : []})))"
    )


def test_demo_cka_and_training_read_right(driver, demo_server: str) -> None:
    """With demo results: a block x block heatmap with the health flags, and no training line that doubles back."""
    _render_and_check(driver, demo_server, "feature-reuse", DEMO_PAGES, Path(tempfile.mkdtemp()) / "cka.png")
    texts = [str(v) for t in _traces(driver) for v in t["text"]]
    page = driver.find_element("tag name", "main").text
    assert len(_traces(driver)) >= 2 and "Representation health of the pretrained encoders" in page
    # the health table counts the collapsed blocks; their CKA cells, and only those, carry a ⚠
    collapsed = re.search(r"collapsed, (\d+) cell\(s\)", page)
    assert collapsed is not None and (int(collapsed.group(1)) > 0) == any("⚠" in v for v in texts)
    assert "★" not in page
    _render_and_check(driver, demo_server, "training", DEMO_PAGES, Path(tempfile.mkdtemp()) / "training.png")
    lines = [t["x"] for t in _traces(driver) if len(t["x"]) > 1 and all(isinstance(v, (int, float)) for v in t["x"])]
    assert lines and all(all(a <= b for a, b in zip(x, x[1:])) for x in lines)


@pytest.mark.parametrize("url_path", DEMO_PAGES, ids=lambda p: p or "overview")
def test_page_renders_demo_results_in_chromium(url_path: str, driver, demo_server: str, screenshot_dir: Path) -> None:
    path = screenshot_dir / f"demo-{SCREENSHOT_NAMES.get(url_path, url_path)}.png"
    _render_and_check(driver, demo_server, url_path, DEMO_PAGES, path)
