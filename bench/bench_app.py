"""Benchmark of the catalog browser on a synthetic 100,000-unit catalog.

Builds the catalog through the real writer API (``Catalog.write_run`` with ``RunTables``; real
photo thumbnails from ../shared/data/imagenet-samples, random 7x7 maps, k=5) plus one description
per unit (from 2,160 distinct phrases, as composed descriptions repeat) with its MiniLM vector and
three candidates, then prints:
- the median time of a search plus filters (``search_units``, one page of 24), goal <= 150 ms;
- the median time to draw a page of 24 cards (exemplar pictures with their regions, uncached), and
  of a whole rerun of the search page in Streamlit's AppTest, caches empty and warm, goal < 1 s;
- the app's cold start: a fresh `streamlit run` until its health endpoint answers, and a fresh
  process's first search page (imports and the MiniLM model included).

Usage: python bench/bench_app.py [--units 100000] [--out bench/out/app_catalog.duckdb] [--repeats 15]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog_app.render import draw_exemplars, jpeg, strip  # noqa: E402
from catalog_app.views import CARD_EXEMPLARS, CARD_PICTURE  # noqa: E402
from milan_core.catalog import Catalog, RunRecord, RunTables  # noqa: E402
from milan_core.catalog.browse import exemplar_rows  # noqa: E402
from milan_core.catalog.search import search_units  # noqa: E402
from milan_core.embedding import embed  # noqa: E402

IMAGES = ROOT.parent / "shared" / "data" / "imagenet-samples"
LAYERS = 10
K = 5
MAP = 7
N_IMAGES = 300
EVIDENCE = ("object", "scene", "colour", "texture", "position", "shape", "none")
COLOURS = ("red", "green", "blue", "white", "black", "yellow", "brown", "orange")
THINGS = ("faces", "dog heads", "car wheels", "grass", "sky", "stripes", "dots", "text", "windows", "fur",
          "water", "trees", "eyes", "legs", "buildings", "roads", "grids", "edges", "flowers", "birds")
MODIFIERS = ("", "small", "large", "top of", "bottom of", "edges of", "close-up", "striped", "spotted", "shiny",
             "blurry", "curved")
QUERIES = [("face", {}), ("striped texture", {"min_confidence": 0.3}), ("blue sky", {"layers": ["layer3", "layer7"]}),
           ("dog", {"evidence_types": ["object"], "min_score": 0.0}), ("car wheels", {"min_iou": 0.05}),
           ("green", {"layers": ["layer5"], "evidence_types": ["colour", "scene"]})]


def thumbnails(count: int) -> pd.DataFrame:
    """``count`` images rows with real 112px photo thumbnails (the images table's shape)."""
    rows = []
    for path in sorted(IMAGES.glob("*.JPEG"))[:count]:
        picture = Image.open(path).convert("RGB").resize((112, 112))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
        rows.append({"sha256": path.stem, "path": str(path.resolve()), "width": 112, "height": 112, "label": None,
                     "thumbnail": buffer.getvalue()})
    return pd.DataFrame(rows)


def run_tables(units_per_layer: int, images: pd.DataFrame, rng: np.random.Generator) -> RunTables:
    """A run of LAYERS layers of ``units_per_layer`` units in the frame shapes dissect.build_tables makes."""
    names = [f"layer{i}" for i in range(LAYERS)]
    layers = pd.DataFrame({"layer": names, "layer_index": range(LAYERS), "kind": "conv",
                           "n_units": units_per_layer, "map_height": MAP, "map_width": MAP})
    n = LAYERS * units_per_layer
    mean = rng.normal(0, 1, n).astype(np.float32)
    units = pd.DataFrame({
        "layer": np.repeat(names, units_per_layer), "unit": np.tile(np.arange(units_per_layer, dtype=np.int32), LAYERS),
        "threshold": mean + 2.0, "quantile": np.float32(0.99), "act_mean": mean, "act_std": np.float32(1.0),
        "act_min": mean - 3.0, "act_max": mean + 3.0 + rng.random(n, dtype=np.float32),
        "hist": [rng.integers(0, 1000, 32).astype(np.int32)] * n,
    })
    codes = rng.integers(0, 256, (n * K, MAP * MAP), dtype=np.uint8)
    exemplars = pd.DataFrame({
        "layer": np.repeat(units.layer.to_numpy(), K), "unit": np.repeat(units.unit.to_numpy(), K),
        "rank": np.tile(np.arange(K, dtype=np.int16), n), "activation": rng.random(n * K, dtype=np.float32),
        "amap_min": np.repeat(mean - 1.0, K), "amap_max": np.repeat(mean + 4.0, K),
        "amap": [row.tobytes() for row in codes],
        "sha256": images.sha256.to_numpy()[rng.integers(0, len(images), n * K)],
    })
    run = RunRecord(run_id="bench-100k", model="synthetic", layers=names, probe_root=str(IMAGES), config={},
                    code_version="bench", n_images=len(images), n_skipped=0, seconds=0.0, timings={})
    return RunTables(run=run, layers=layers, units=units, images=images, exemplars=exemplars)


def add_descriptions(catalog: Catalog, rng: np.random.Generator) -> None:
    """One description per unit (with its MiniLM vector) and three candidates, in one transaction."""
    phrases = [f"{m} {c} {t}".strip() for m in MODIFIERS for c in ("", *COLOURS) for t in THINGS]
    vectors = embed(phrases)
    unit_ids = catalog.query("SELECT unit_id FROM units ORDER BY unit_id").unit_id.to_numpy()
    pick = rng.integers(0, len(phrases), len(unit_ids))
    confidence = rng.random(len(unit_ids))
    descriptions = pd.DataFrame({
        "unit_id": unit_ids, "describer": "evidence", "description": [phrases[i] for i in pick],
        "score": rng.normal(0, 1, len(unit_ids)), "log_p_given_e": np.log(confidence + 1e-3), "log_p": -3.0,
        "confidence": confidence, "evidence_type": [EVIDENCE[i % len(EVIDENCE)] for i in pick],
        "evidence": [json.dumps({"best_iou": round(float(x), 3)}) for x in rng.random(len(unit_ids)) / 5],
        "embedding": [vectors[i] for i in pick],
    })
    candidates = pd.DataFrame({
        "unit_id": np.repeat(unit_ids, 3), "describer": "evidence",
        "rank": np.tile(np.arange(3, dtype=np.int16), len(unit_ids)),
        "text": [phrases[i] for i in rng.integers(0, len(phrases), 3 * len(unit_ids))],
        "log_p_given_e": -1.0, "log_p": -3.0, "score": 0.0,
    })
    with catalog.transaction():
        catalog.insert_frame("descriptions", descriptions)
        catalog.insert_frame("candidates", candidates)


def build(out: Path, units: int) -> float:
    """Write the synthetic catalog; returns the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    out.unlink(missing_ok=True)
    with Catalog(out, writable=True) as catalog:
        catalog.write_run(run_tables(units // LAYERS, thumbnails(N_IMAGES), rng))
        add_descriptions(catalog, rng)
    return time.perf_counter() - started


def median_ms(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def search_ms(catalog: Catalog, repeats: int) -> tuple[float, float]:
    """Median and worst per-query median of search + filters over the query mix (the query's vector
    is computed on its first run and cached after, as in the app)."""
    medians = [median_ms(lambda q=q, f=f: search_units(catalog, q, limit=24, **f), repeats) for q, f in QUERIES]
    return statistics.median(medians), max(medians)


def cards_ms(catalog: Catalog, repeats: int) -> float:
    """Median time to draw one page of 24 card pictures as the grid does (one query, no cache;
    168 px strips sent as JPEGs)."""
    page = search_units(catalog, "face", limit=24)

    def draw() -> None:
        rows = exemplar_rows(catalog, page.unit_id.tolist(), CARD_EXEMPLARS)
        for _, unit_rows in rows.groupby("unit_id"):
            jpeg(strip([picture for picture, _ in draw_exemplars(unit_rows, None, CARD_PICTURE)]))

    return median_ms(draw, repeats)


def apptest_page_ms(out: Path, repeats: int) -> tuple[float, float]:
    """Median time of a whole rerun of the search page (24 cards) in AppTest, with Streamlit's caches
    cleared before each run and with them warm. One AppTest is reused: building one scans every
    installed package's metadata (~0.7 s here), which is the harness's cost, not the app's."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["MILAN_CATALOG"] = str(out)
    app = AppTest.from_file(str(ROOT / "catalog_app" / "app.py"), default_timeout=120)
    app.query_params["q"] = "red faces"

    def run(clear: bool) -> None:
        if clear:
            st.cache_data.clear()
        app.run()
        assert not app.exception and len(app.get("image")) == 24, app.exception

    run(True)  # imports, the embedding model and the catalog's vectors, once
    return median_ms(lambda: run(True), repeats), median_ms(lambda: run(False), repeats)


FIRST_PAGE = """
import os, time, sys
started = time.perf_counter()
sys.path.insert(0, {root!r})
from streamlit.testing.v1 import AppTest
os.environ["MILAN_CATALOG"] = {out!r}
app = AppTest.from_file({app!r}, default_timeout=300)
app.query_params["q"] = "face"
app.run()
assert not app.exception
print(time.perf_counter() - started)
"""


def first_page_seconds(out: Path) -> float:
    """A fresh Python process rendering its first search page (all imports and model loading)."""
    code = FIRST_PAGE.format(root=str(ROOT), out=str(out), app=str(ROOT / "catalog_app" / "app.py"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def server_ready_seconds(out: Path) -> float:
    """A fresh `streamlit run` until its health endpoint answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "catalog_app" / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env={**os.environ, "MILAN_CATALOG": str(out)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - started < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("streamlit did not start within 120 s")
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "app_catalog.duckdb")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--reuse", action="store_true", help="keep an existing catalog at --out")
    args = parser.parse_args()
    if not (args.reuse and args.out.is_file()):
        print(f"built {args.units} units in {build(args.out, args.units):.1f} s "
              f"({args.out.stat().st_size / 2**20:.0f} MB at {args.out})")
    with Catalog(args.out) as catalog:
        median, worst = search_ms(catalog, args.repeats)
        print(f"search + filters, one page of 24: median {median:.1f} ms, slowest query {worst:.1f} ms (goal <= 150)")
        print(f"24 card pictures drawn, uncached: median {cards_ms(catalog, args.repeats):.0f} ms")
    cold, warm = apptest_page_ms(args.out, 5)
    print(f"search page with 24 cards (AppTest rerun): median {cold:.0f} ms with Streamlit's caches empty, "
          f"{warm:.0f} ms warm (goal < 1000)")
    print(f"cold start: streamlit run to healthy {server_ready_seconds(args.out):.1f} s; "
          f"fresh process to first search page {first_page_seconds(args.out):.1f} s")


if __name__ == "__main__":
    main()
