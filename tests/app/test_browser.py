"""The app in a real browser: `streamlit run` on 127.0.0.1, driven by Debian's headless Chromium.

Screenshots go to tests/artifacts/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from catalog_app.export import EXPORT_COLUMNS

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
STARTUP_SECONDS = 90
WAIT_MS = 60_000

from playwright import sync_api  # noqa: E402  (pinned in requirements.txt)

if not CHROMIUM.is_file():
    # In CI the test command installs chromium: a missing browser there is a failure, not a skip.
    if os.environ.get("CI") == "true":
        raise RuntimeError("Debian's chromium is missing at /usr/bin/chromium (apt-get install -y chromium)")
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen) -> None:
    """Poll Streamlit's health endpoint until it answers, the server dies, or time runs out."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer within {STARTUP_SECONDS} s")


@pytest.fixture(scope="module")
def app_url(described_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `streamlit run` of the app on the fixture catalog, stopped when the tests end."""
    port = free_port()
    log = (tmp_path_factory.mktemp("server") / "streamlit.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "catalog_app" / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, env={**os.environ, "MILAN_CATALOG": str(described_catalog)}, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def page(app_url: str) -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            context.set_default_timeout(WAIT_MS)
            yield context.new_page()
        finally:
            browser.close()


#: JavaScript counting the pictures the browser has actually decoded.
DECODED_PICTURES = (
    "[...document.querySelectorAll('[data-testid=stImage] img')]"
    ".filter(img => img.complete && img.naturalWidth > 0).length"
)


def wait_for_pictures(page: sync_api.Page, count: int) -> None:
    """Wait until exactly ``count`` pictures are decoded (the previous view's are gone)."""
    page.wait_for_function(f"() => {DECODED_PICTURES} == {count}")


def test_typing_a_query_shows_cards_with_pictures_and_exports_them(
    page: sync_api.Page, app_url: str, tmp_path: Path
) -> None:
    page.goto(app_url)
    box = page.get_by_label("Search descriptions")
    box.fill("face")
    box.press("Enter")
    page.get_by_text("3 matching units").wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search_face.png"), full_page=True)
    wait_for_pictures(page, 3)
    page.screenshot(path=str(ARTIFACTS / "search_face.png"), full_page=True)
    assert "q=face" in page.url

    page.get_by_text("select for export").first.click()
    page.get_by_text("selected units (1)").wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    saved = tmp_path / "units.csv"
    download.value.save_as(saved)
    frame = pd.read_csv(io.BytesIO(saved.read_bytes()))
    assert tuple(frame.columns) == EXPORT_COLUMNS
    assert list(frame.key) == ["blocks.6:17"] and list(frame.description) == ["human faces"]


def test_a_shared_unit_link_opens_the_unit_page(page: sync_api.Page, app_url: str, small_catalog_run: str) -> None:
    page.goto(f"{app_url}/unit?run={small_catalog_run}&unit=blocks.6:17")
    page.get_by_text("“human faces”").wait_for()
    page.get_by_text("Units with the nearest descriptions").wait_for()
    wait_for_pictures(page, 5)
    page.set_viewport_size({"width": 1400, "height": 2200})
    page.locator(".js-plotly-plot .bars").first.wait_for()  # the histogram is drawn
    page.get_by_text('"best_iou"').wait_for()  # and the evidence
    page.screenshot(path=str(ARTIFACTS / "unit_page.png"), full_page=True)


def test_the_overview_draws_its_charts(page: sync_api.Page, app_url: str) -> None:
    page.goto(f"{app_url}/overview")
    page.get_by_text("Most used descriptions per layer").wait_for()
    page.locator(".js-plotly-plot .bars").first.wait_for()
    assert page.locator(".js-plotly-plot").count() >= 2
    page.screenshot(path=str(ARTIFACTS / "overview_page.png"), full_page=True)


def test_the_sidebar_field_opens_another_catalog(page: sync_api.Page, app_url: str, small_catalog: Path) -> None:
    page.goto(f"{app_url}/?q=face")
    page.get_by_text("3 matching units").wait_for()
    field = page.get_by_role("textbox", name="Catalog file")
    field.fill(str(small_catalog))  # dissected, not described
    field.press("Enter")
    page.get_by_text("No unit has a description yet").wait_for()
    assert page.get_by_role("textbox", name="Catalog file").input_value() == str(small_catalog)
    page.get_by_role("link", name="Overview").click()  # the choice holds on another page
    page.get_by_text("No descriptions yet").wait_for()
    assert page.get_by_role("textbox", name="Catalog file").input_value() == str(small_catalog)
