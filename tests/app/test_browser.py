"""The app in a real browser: `streamlit run` on 127.0.0.1, driven by Debian's headless Chromium.

Screenshots go to tests/artifacts/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from bench.bench_browser import CHROMIUM_ARGS, free_port
from catalog_app.export import EXPORT_COLUMNS
from milan_core.catalog import Catalog

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
STARTUP_SECONDS = 90
WAIT_MS = 120_000  # the shared 2-core machine is often at load 15-20

from playwright import sync_api  # noqa: E402  (pinned in requirements.txt)

if not CHROMIUM.is_file():
    # In CI the test command installs chromium: a missing browser there is a failure, not a skip.
    if os.environ.get("CI") == "true":
        raise RuntimeError("Debian's chromium is missing at /usr/bin/chromium (apt-get install -y chromium)")
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


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
def browsed_catalog(described_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the described catalog in a folder of its own: the browser's votes go beside it."""
    path = tmp_path_factory.mktemp("browsed") / "catalog.duckdb"
    shutil.copy(described_catalog, path)
    return path


@pytest.fixture(scope="module")
def app_url(
    browsed_catalog: Path, small_catalog: Path, two_run_catalog: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real `streamlit run` of the app on the fixture catalog, stopped when the tests end. It is
    started with the project's .streamlit/config.toml and without --server.address: the default
    must be loopback."""
    port = free_port()
    log = (tmp_path_factory.mktemp("server") / "streamlit.log").open("w")
    folders = os.pathsep.join(str(path.parent) for path in (browsed_catalog, small_catalog, two_run_catalog))
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "catalog_app" / "app.py"), "--server.port", str(port)],
        cwd=REPO,
        env={**os.environ, "MILAN_CATALOG": str(browsed_catalog), "MILAN_CATALOG_DIRS": folders},
        stdout=log,
        stderr=subprocess.STDOUT,
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
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def new_tab(browser: sync_api.Browser) -> sync_api.Page:
    """A page in a context of its own: its own cookies, so its own Streamlit session (a person's tab)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    return context.new_page()


@pytest.fixture(scope="module")
def page(browser: sync_api.Browser) -> sync_api.Page:
    return new_tab(browser)


#: JavaScript counting the pictures the browser has actually decoded.
DECODED_PICTURES = (
    "[...document.querySelectorAll('[data-testid=stImage] img')]"
    ".filter(img => img.complete && img.naturalWidth > 0).length"
)


def wait_for_pictures(page: sync_api.Page, count: int) -> None:
    """Wait until exactly ``count`` pictures are decoded (the previous view's are gone)."""
    page.wait_for_function(f"() => {DECODED_PICTURES} == {count}")


def wait_for_meaning(page: sync_api.Page) -> None:
    """Wait until the meaning matches have joined: the page reruns once when the sentence model has
    loaded in the background, and a click or download caught by that rerun would be lost."""
    page.get_by_text("Keyword matches only for now").wait_for(state="hidden", timeout=180_000)


def wait_until_drawn(page: sync_api.Page) -> None:
    """Wait until the page's run has drawn its last element (the sidebar's list of keys, after the
    navigation script) and nothing is stale: keys pressed while the run's last elements still
    arrive were lost in 3 of 5 runs of the whole file (the search box lost its focus to the body),
    and a click on the first strip then opened another card's exemplar once in a clean clone."""
    page.get_by_text("Keys: / search box", exact=False).wait_for()
    page.wait_for_function("() => !document.querySelector('[data-stale=true]')")


#: Records, every frame from the document's start, where the first card's unit link is (its
#: address and its top on the page): a card that moves under the pointer takes a click elsewhere.
#: Frames while a widget above it is still Streamlit's placeholder (its code not loaded yet, on a
#: browser's first visit) are left out: in one run of the whole suite under load the card was 20 px
#: higher at first, most likely such a placeholder (not caught in the act).
RECORD_FIRST_CARD = """
window.__firstCard = [];
(function record() {
  const link = document.querySelector("[data-testid=stPageLink-NavLink][href*='unit?']");
  const main = document.querySelector('[data-testid=stMain]');
  const waiting = link && [...document.querySelectorAll('[data-testid=stMain] [data-testid=stSkeleton]')]
    .some((skeleton) => skeleton.getBoundingClientRect().top < link.getBoundingClientRect().top);
  if (link && main && !waiting) {
    const spot = [link.getAttribute('href'), Math.round(link.getBoundingClientRect().top + main.scrollTop)];
    const last = window.__firstCard[window.__firstCard.length - 1];
    if (!last || last[0] !== spot[0] || last[1] !== spot[1]) window.__firstCard.push(spot);
  }
  requestAnimationFrame(record);
})();
"""


def test_the_first_card_stays_put_while_the_page_draws_and_meaning_joins(
    browser: sync_api.Browser, app_url: str
) -> None:
    """The first test on the fresh server: its page draws the keyword matches, the sentence model
    loads, the page reruns and the meaning matches join below them. The first card must not move
    meanwhile (a note that came and went above the cards moved them 38 px, and a click
    in that moment landed on another card's picture: the benchmark's click that never drew its unit)."""
    tab = new_tab(browser)
    tab.add_init_script(RECORD_FIRST_CARD)
    tab.goto(f"{app_url}/?q=faces&sim=0.4")
    tab.get_by_text("matching units").first.wait_for()
    wait_for_meaning(tab)
    tab.get_by_text("Related", exact=False).first.wait_for()  # the meaning matches have joined
    tab.wait_for_function(f"() => !document.querySelector('[data-stale=true]') && {DECODED_PICTURES} >= 3")
    spots = tab.evaluate("window.__firstCard")
    tab.context.close()
    assert len(spots) == 1, spots  # one link, one place, from its first frame on


def test_typing_a_query_shows_cards_with_pictures_and_exports_them(
    page: sync_api.Page, app_url: str, tmp_path: Path
) -> None:
    page.goto(app_url)
    box = page.get_by_label("Search descriptions")
    box.fill("face")
    box.press("Enter")
    page.get_by_text("2 matching units").wait_for()
    wait_for_meaning(page)
    ARTIFACTS.mkdir(exist_ok=True)
    wait_for_pictures(page, 2)
    page.screenshot(path=str(ARTIFACTS / "search_face.png"), full_page=True)
    assert "q=face" in page.url

    page.get_by_text("select (compare, export)").first.click()
    page.get_by_role("radio", name="selected units (1)").wait_for()
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
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2")
    page.screenshot(path=str(ARTIFACTS / "overview_page.png"), full_page=True)


def test_the_sidebar_lists_catalogs_to_pick_and_the_choice_holds(
    browser: sync_api.Browser, app_url: str, small_catalog: Path
) -> None:
    page = new_tab(browser)  # a session of its own: the other tests keep the default catalog
    page.goto(f"{app_url}/?q=face")
    page.get_by_text("2 matching units").wait_for()
    assert page.get_by_role("textbox", name="Catalog").count() == 0  # no field to type a path into
    page.get_by_role("combobox", name="Catalog").click()
    page.get_by_role("option", name=f"{small_catalog.name} ({small_catalog.parent.name})").click()
    page.get_by_text("No unit has a description yet").wait_for()
    page.get_by_role("link", name="Overview").click()  # the choice holds on another page
    page.get_by_text("No descriptions yet").wait_for()
    page.context.close()


def test_the_server_listens_on_loopback_only(app_url: str) -> None:
    port = int(app_url.rsplit(":", 1)[1])
    addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for address in addresses:  # another interface of this machine, if it has one
        with socket.socket() as probe, pytest.raises(OSError):
            probe.settimeout(2)
            probe.connect((address, port))


HOSTILE_URLS = (
    "/unit?run={run}&unit=[click here](https://evil.example)",
    "/audit?q=[verify your account](https://evil.example/x)",
    "/unit?run={run}&unit=![x](http://127.0.0.1:9/t.png)",
)


@pytest.mark.parametrize("path", HOSTILE_URLS, ids=["unit-link", "audit-link", "unit-image"])
def test_hostile_urls_show_their_text_as_text(
    browser: sync_api.Browser, app_url: str, small_catalog_run: str, path: str
) -> None:
    tab = new_tab(browser)
    requested: list[str] = []
    tab.on("request", lambda request: requested.append(request.url))
    url = app_url + path.format(run=small_catalog_run)
    tab.goto(url)
    shown = {
        "unit-link": "[click here](https:",
        "audit-link": "[verify your account](https:",
        "unit-image": "![x](http:",
    }
    literal = next(text for text in shown.values() if text in url)
    tab.get_by_text(literal, exact=False).first.wait_for()  # the characters, shown as typed (with a word joiner)
    tab.wait_for_timeout(1000)
    hrefs = tab.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    assert hrefs and not [href for href in hrefs if urlparse(href).hostname != "127.0.0.1"], hrefs
    sources = tab.eval_on_selector_all("img", "pictures => pictures.map(img => img.src)")
    assert not [src for src in sources if src.startswith("http") and urlparse(src).port != urlparse(app_url).port]
    assert not [r for r in requested if urlparse(r).hostname in ("evil.example",) or urlparse(r).port == 9]
    tab.screenshot(path=str(ARTIFACTS / f"hostile_{path.split('?')[0].strip('/')}.png"), full_page=True)
    tab.context.close()


def test_no_page_loads_anything_from_outside_the_server(
    browser: sync_api.Browser, app_url: str, small_catalog_run: str
) -> None:
    tab = new_tab(browser)
    requested: list[str] = []
    tab.on("request", lambda request: requested.append(request.url))
    for path, sign in (
        ("/?q=face", "2 matching units"),
        (f"/unit?run={small_catalog_run}&unit=blocks.6:17", "Candidates"),
        ("/overview", "Most used descriptions per layer"),
        ("/audit?q=face", "matching units"),
        ("/image", "Live probe"),
        ("/importance", "Importance"),
    ):
        tab.goto(app_url + path)
        tab.get_by_text(sign).first.wait_for()
        tab.wait_for_timeout(500)
    outside = [url for url in requested if not url.startswith((app_url, "data:", "blob:"))]
    assert requested and not outside, outside
    tab.context.close()


def test_a_card_click_opens_the_unit_and_back_returns_to_the_results(
    page: sync_api.Page, app_url: str, small_catalog_run: str
) -> None:
    page.goto(f"{app_url}/?q=dogs")
    page.wait_for_function("() => window.__milanNavigation === true")  # navigation.js is installed
    wait_for_meaning(page)
    wait_until_drawn(page)
    entries = page.evaluate("history.length")
    page.keyboard.press("/")  # the shortcut focuses the search box
    page.wait_for_function("() => document.activeElement?.getAttribute('aria-label') === 'Search descriptions'")
    page.keyboard.press("Control+A")
    page.keyboard.type("face")
    page.keyboard.press("Enter")
    page.get_by_text("2 matching units").wait_for()
    assert page.evaluate("history.length") == entries + 1  # one entry per search
    page.get_by_role("link", name="blocks.6:17").first.click()
    page.get_by_text("“human faces”").wait_for()
    assert f"run={small_catalog_run}" in page.url and "unit=blocks.6" in page.url
    assert page.evaluate("history.length") == entries + 2  # and one per unit opened
    page.get_by_role("button", name="next: blocks.6:18 →").wait_for()  # j clicks it once it is drawn
    page.keyboard.press("j")  # next unit of the layer
    page.get_by_role("heading", name="blocks.6:18").wait_for()
    page.go_back()
    page.get_by_text("“human faces”").wait_for()
    page.go_back()
    page.get_by_text("2 matching units").wait_for()
    assert "q=face" in page.url
    page.go_back()
    page.wait_for_function("() => location.search.includes('q=dogs')")


def test_a_click_on_an_exemplar_opens_its_image_and_back_returns(
    page: sync_api.Page, app_url: str, browsed_catalog: Path
) -> None:
    with Catalog(browsed_catalog) as catalog:
        run = catalog.run().run_id
        images = catalog.exemplars(catalog.unit_id(run, "blocks.6:17"), decode=False).image_id.tolist()
    page.goto(f"{app_url}/?q=face")
    page.get_by_text("2 matching units").wait_for()
    wait_for_meaning(page)
    wait_until_drawn(page)
    strip = page.locator('[data-testid="stImage"] img').first
    strip.wait_for()
    box = strip.bounding_box()
    page.evaluate("window.__sameDocument = true")  # gone if a click reloads the page instead of navigating in it
    strip.click(position={"x": box["width"] * 5 / 6, "y": box["height"] / 2})  # the strip's third picture
    page.get_by_text("hold it among their top exemplars", exact=False).wait_for()
    assert "/image?" in page.url and f"image={images[2]}" in page.url  # the first card's third exemplar
    page.go_back()
    page.get_by_text("2 matching units").wait_for()
    assert "q=face" in page.url
    page.get_by_role("link", name="#2", exact=True).first.click()  # the link under the strip's second picture
    page.get_by_text("hold it among their top exemplars", exact=False).wait_for()
    assert f"image={images[1]}" in page.url and len(page.context.pages) == 1  # here, not in a new tab
    assert page.evaluate("window.__sameDocument === true")
    page.go_back()
    page.get_by_text("2 matching units").wait_for()

    page.get_by_role("link", name="blocks.6:17").first.click()  # a unit page's exemplar, the same way
    page.get_by_text("“human faces”").wait_for()
    wait_for_pictures(page, 5)
    wait_until_drawn(page)
    page.locator('[data-testid="stImage"] img').first.click()
    page.get_by_text("hold it among their top exemplars", exact=False).wait_for()
    assert f"image={images[0]}" in page.url
    page.get_by_role("link", name="blocks.6:17").first.wait_for()  # the unit is among the image's units
    page.go_back()
    page.get_by_text("“human faces”").wait_for()


def test_two_runs_side_by_side_for_one_query(browser: sync_api.Browser, app_url: str, two_run_catalog: Path) -> None:
    tab = new_tab(browser)
    tab.goto(f"{app_url}/audit?q=face")
    tab.get_by_text("matching units").first.wait_for()
    tab.get_by_role("combobox", name="Catalog").click()
    tab.get_by_role("option", name=f"{two_run_catalog.name} ({two_run_catalog.parent.name})").click()
    tab.get_by_text("Runs side by side").wait_for()
    with Catalog(two_run_catalog) as catalog:
        runs = catalog.runs()
    for run in runs.itertuples():  # a column per run, headed by its id and model
        tab.get_by_text(f"{run.run_id} · {run.model}").wait_for()
    wait_for_pictures(tab, 4)  # "human faces" and "spotted dog faces" in each model
    assert tab.get_by_role("link", name="blocks.6:17 — human faces").count() == 2
    tab.screenshot(path=str(ARTIFACTS / "audit_two_runs.png"), full_page=True)
    tab.get_by_role("link", name="blocks.6:17 — human faces").last.click()
    tab.get_by_text("“human faces”").wait_for()
    assert f"run={runs.run_id.iloc[-1]}" in tab.url or f"run={runs.run_id.iloc[0]}" in tab.url
    tab.context.close()


def test_an_upload_lists_the_units_that_fire_on_it_and_a_bad_one_gets_a_sentence(
    page: sync_api.Page, app_url: str, browsed_catalog: Path, tmp_path: Path
) -> None:
    with Catalog(browsed_catalog) as catalog:
        run = catalog.run()
        photo = Path(catalog.exemplars(catalog.unit_id(run.run_id, "blocks.6:17"), decode=False).path[0])
    page.goto(f"{app_url}/image?run={run.run_id}")
    page.get_by_text("Live probe").wait_for()
    page.locator("input[type=file]").set_input_files(str(photo))
    page.get_by_text("above their threshold shown", exact=False).wait_for()
    page.get_by_text("strength", exact=False).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "live_probe.png"), full_page=True)
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photo")
    page.locator("input[type=file]").set_input_files(str(bad))
    page.get_by_text("not an image Pillow can read", exact=False).wait_for()


def test_votes_from_two_tabs_both_count(browser: sync_api.Browser, app_url: str, small_catalog_run: str) -> None:
    url = f"{app_url}/unit?run={small_catalog_run}&unit=blocks.6:42"
    tabs = [new_tab(browser), new_tab(browser)]
    for tab in tabs:
        tab.goto(url)
        tab.get_by_text("“spotted dog faces”").wait_for()
    for tab in tabs:  # both pages drawn before either votes, like two people at once
        tab.get_by_role("button", name="Agree", exact=True).click()
        tab.get_by_text("you agree").wait_for()
    tabs[0].reload()
    tabs[0].get_by_text("agree 2 · disagree 0").wait_for()  # a reloaded tab is a new session: a new voter
    for tab in tabs:
        tab.context.close()
