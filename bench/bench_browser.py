"""The catalog browser timed in a real browser: `streamlit run` on a catalog, Debian's headless Chromium.

Prints, for a catalog such as Lite0 dissected over the 1000 imagenet-samples:
- first paint of a fresh server: from the first request until the search page shows its frame and
  first card (its text: torch is still importing in the background), goal <= 2 s, and until its
  first picture;
- Enter -> cards: median over new queries from pressing Enter until the new count and every card
  picture are drawn, goal <= 0.5 s;
- card -> unit page: median from clicking a card's link until the unit page's exemplars are drawn,
  goal <= 1 s;
- live probe: from choosing a photo in the upload field until its units are drawn, goal <= 1.5 s
  (the first upload also loads the model, so the median is over the later ones).

Usage: python bench/bench_browser.py --catalog data/catalog.duckdb [--photos ../shared/data/imagenet-samples]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright import sync_api

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
#: The flags the browser tests use too (tests/app/test_browser.py imports them).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QUERIES = ("dog", "bird", "car", "stripes", "water", "face", "red", "building", "grass")
IMAGES = "document.querySelectorAll('[data-testid=stImage] img')"
DRAWN = (
    f"() => !document.querySelector('[data-stale=true]') && {IMAGES}.length == "
    f"[...{IMAGES}].filter(i => i.complete && i.naturalWidth > 0).length"
)
#: What the results say (their count line and first unit): a new query's page differs from the last one,
#: so a wait cannot end on the previous page while the new run has not begun.
RESULTS = (
    "() => [...document.querySelectorAll('[data-testid=stCaptionContainer], [data-testid=stAlert]')]"
    ".map(e => e.innerText).filter(t => /matching units|No unit matches/.test(t)).join() + ' ' + "
    "(document.querySelector(\"[data-testid=stPageLink-NavLink][href*='unit?']\") || {}).href"
)
UNIT_LINKS = "[data-testid=stPageLink-NavLink][href*='unit?']"
PICTURES = (
    "[...document.querySelectorAll('[data-testid=stImage] img')].filter(i => i.complete && i.naturalWidth > 0).length"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str) -> None:
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("streamlit did not start")


STUCK_SECONDS = 30
ARTIFACTS = ROOT / "bench" / "out"


def unit_page_drawn(page: sync_api.Page) -> None:
    """Wait until a unit page shows its threshold slider and five exemplar pictures."""
    page.get_by_text("Threshold (redraws the regions)").wait_for(timeout=STUCK_SECONDS * 1000)
    page.wait_for_function(f"() => {PICTURES} >= 5", timeout=STUCK_SECONDS * 1000)


def stuck_report(page: sync_api.Page, step: str) -> str:
    """What a step that never finished left on screen: the address, the first words, a screenshot."""
    shot = ARTIFACTS / f"stuck-{time.strftime('%H%M%S')}.png"
    page.screenshot(path=str(shot))
    text = " ".join(page.evaluate("document.body.innerText").split())[:300]
    images = page.evaluate(f"[{IMAGES}.length, {PICTURES}]")
    return f"{step}: stuck at {page.url} (pictures drawn/present {images[1]}/{images[0]}; {shot}): {text}"


def timed(action, until) -> float:
    start = time.perf_counter()
    action()
    until()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "imagenet-samples")
    parser.add_argument("--server-log", type=Path, default=Path("bench/out/bench_browser_server.log"),
                        help="where the Streamlit server's output goes (read it when a step hangs)")
    parser.add_argument("--clicks", type=int, default=5, help="card clicks timed (from different queries)")
    args = parser.parse_args()
    args.server_log.parent.mkdir(parents=True, exist_ok=True)
    log = args.server_log.open("w")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "catalog_app" / "app.py"), "--server.port", str(port)],
        cwd=ROOT,
        env={**os.environ, "MILAN_CATALOG": str(args.catalog.resolve())},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(url)
        healthy = time.perf_counter() - started
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            problems: list[str] = []
            page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text[:200]}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
            page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
            request = time.perf_counter()
            frames: list[float] = []  # when each of the app's websocket messages reached the browser
            page.on("websocket", lambda socket: socket.on(
                "framereceived", lambda _: frames.append(time.perf_counter() - request)))
            page.goto(f"{url}/?q=dog")
            page.locator("[data-testid=stPageLink-NavLink]").first.wait_for()
            first_paint = time.perf_counter() - request
            page.locator("[data-testid=stImage] img").first.wait_for()
            first_picture = time.perf_counter() - request
            before = [t for t in frames if t <= first_paint]
            print(
                f"fresh server: healthy after {healthy:.2f} s; /?q=dog drew its frame and first card "
                f"{first_paint:.2f} s after the request (goal <= 2 s), its first picture after {first_picture:.2f} s "
                f"({time.perf_counter() - started:.2f} s after starting); the server's first message reached the "
                f"browser at {before[0] if before else float('nan'):.2f} s and {len(before)} messages by "
                f"{before[-1] if before else float('nan'):.2f} s, before the first card"
            )
            page.get_by_text("Keyword matches only", exact=False).wait_for(state="detached")  # meaning joined
            page.wait_for_function("() => window.__milanNavigation === true")
            box = page.get_by_label("Search descriptions")
            enter = []
            for query in QUERIES[1:]:
                box.fill(query)
                shown = page.evaluate(RESULTS)
                enter.append(
                    timed(
                        lambda: box.press("Enter"),
                        lambda q=query, shown=shown: page.wait_for_function(
                            f"() => location.search.includes('q={q}') && !document.querySelector('[data-stale=true]')"
                            f" && /matching units|No unit matches/.test(document.body.innerText)"
                            f" && ({RESULTS})() !== {json.dumps(shown)} && {PICTURES} == {IMAGES}.length"
                        ),
                    )
                )
            print(
                f"Enter -> cards, {len(enter)} new queries: median {statistics.median(enter):.2f} s, "
                f"max {max(enter):.2f} s (goal <= 0.5 s)"
            )
            opened, stuck = [], []
            for query in itertools.islice(itertools.cycle(QUERIES[1:]), 3 * args.clicks):
                if len(opened) + len(stuck) == args.clicks:
                    break
                page.goto(f"{url}/?q={query}")
                page.get_by_text(re.compile("matching units|No unit matches")).first.wait_for()
                if page.get_by_text("No unit matches").count():
                    continue
                page.wait_for_function(DRAWN)  # a person clicks a card they see
                link = page.locator(f"{UNIT_LINKS}").first
                try:
                    opened.append(timed(link.click, lambda: unit_page_drawn(page)))
                except sync_api.TimeoutError:
                    stuck.append(stuck_report(page, f"card click from /?q={query}"))
            print(
                f"card -> unit page, {len(opened)} units: median {statistics.median(opened):.2f} s, "
                f"max {max(opened):.2f} s (goal <= 1 s); {len(stuck)} click(s) not drawn within "
                f"{STUCK_SECONDS} s" + "".join(f"\n  {line}" for line in stuck)
            )
            page.goto(f"{url}/image")
            upload = page.locator("input[type=file]")
            upload.wait_for(state="attached")
            probes = []
            for photo in sorted(args.photos.glob("*.JPEG"))[:6]:
                probes.append(
                    timed(
                        lambda p=photo: upload.set_input_files(str(p)),
                        lambda p=photo: (
                            page.get_by_text(f"{p.name}: ", exact=False).wait_for(),
                            page.wait_for_function(DRAWN),
                        ),
                    )
                )
            print(
                f"live probe, upload -> units drawn: first {probes[0]:.2f} s (loads the model), then median "
                f"{statistics.median(probes[1:]):.2f} s over {len(probes) - 1} (goal <= 1.5 s)"
            )
            browser.close()
        print(f"browser problems: {len(problems)}" + "".join(f"\n  {line}" for line in problems[:20]))
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
