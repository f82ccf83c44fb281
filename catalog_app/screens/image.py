"""Any image's units (``/image?run=RUN&image=ID``): every unit whose top-k holds a probe image, with
its region on that image, by layer; and the live probe, which runs the run's model on an uploaded
photo (or on this probe image) and lists the units that fire most on it, per layer.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from catalog_app.common import open_catalog, run_choice, single_threaded_torch, unit_link
from catalog_app.probe import ProbeResult, app_device, probe, probe_model, read_upload, strongest
from catalog_app.render import LEGEND, highlight, jpeg
from catalog_app.text import markdown_text
from catalog_app.views import basket
from milan_core.catalog import Catalog
from milan_core.catalog.browse import descriptions_of, image_path, image_units
from milan_core.catalog.search import default_describer
from milan_core.errors import UserError
from milan_core.exemplars import dequantise
from milan_core.models import LoadedModel

PER_ROW = 6
PER_LAYER = 6
SHOWN = 168


@st.cache_resource(max_entries=2, show_spinner="Loading the run's model …")
def cached_model(model_name: str, weights: str | None, device: str) -> LoadedModel:
    """The run's model on the app's device, loaded once per server process."""
    single_threaded_torch()
    return probe_model(model_name, weights, torch.device(device))


def unit_tile(run_id: str, key: str, picture, description: object, line: str) -> None:
    """One unit on an image: its region drawn on the picture, a link to it, its description."""
    st.image(picture, width="stretch")
    unit_link(run_id, key, bold=True)
    text = markdown_text(description) if isinstance(description, str) else "not described yet"
    st.caption(f"{text}  \n{line}")  # one element, two lines: a probe draws 30 tiles


def tiles(rows: pd.DataFrame, draw) -> None:
    """Rows of unit tiles, grouped by layer; ``draw(row)`` gives (picture, caption line)."""
    for layer, group in rows.groupby("layer", sort=False):
        st.markdown(f"**{markdown_text(layer)}** · {len(group)} unit(s)")
        for start in range(0, len(group), PER_ROW):
            for column, row in zip(st.columns(PER_ROW), group.iloc[start : start + PER_ROW].itertuples()):
                with column:
                    picture, line = draw(row)
                    unit_tile(row.run_id, row.key, picture, row.description, line)


def stored_image_units(catalog: Catalog, run_id: str, image_id: int) -> None:
    """The probe image, and every unit of the run whose top-k holds it, with its region on it."""
    try:
        image = catalog.image(image_id)
    except UserError as error:
        st.info(markdown_text(f"{error}."))
        return
    left, right = st.columns([1, 3])
    left.image(image.thumbnail, width="stretch")
    stored = image_path(catalog, run_id, image_id)
    right.subheader(markdown_text(Path(stored).name if stored else f"image {image_id}"))
    right.caption(markdown_text(f"label: {image.label or 'none'} · {image.width}x{image.height} · image {image_id}"))
    units = image_units(catalog, image_id, run_id, default_describer(catalog))
    if units.empty:
        right.info("No unit of this run has this image among its top exemplars.")
        return
    right.caption(f"{len(units)} unit(s) of this run hold it among their top exemplars. Regions: {LEGEND['dim']}.")

    def draw(row):
        amap = dequantise(bytes(row.amap), row.amap_min, row.amap_max, row.map_height, row.map_width)
        return jpeg(highlight(
            image.thumbnail, amap, row.threshold, SHOWN
        )), f"exemplar #{row.rank + 1} · {row.activation:.2f}"

    tiles(units, draw)


def probe_source(catalog: Catalog, run_id: str, image_id: int | None) -> tuple[bytes | None, str]:
    """The photo to probe: an upload, else this page's probe image (its file, else its thumbnail)."""
    upload = st.file_uploader("Upload a photo to probe", type=None, key="probe_upload")
    if upload is not None:
        return upload.getvalue(), markdown_text(upload.name)
    if image_id is not None and st.toggle("Probe this page's image", key="probe_stored"):
        record, stored = catalog.image(image_id), image_path(catalog, run_id, image_id)
        path = Path(stored) if stored else None
        if path is not None and path.is_file():
            return path.read_bytes(), markdown_text(path.name)
        return record.thumbnail, f"image {image_id} (its thumbnail: the file is not where the run read it)"
    return None, ""


def live_probe(catalog: Catalog, run_id: str, image_id: int | None) -> None:
    """Upload → the run's model with hooks → the units that fire most on it, per layer."""
    st.subheader("Live probe")
    st.caption(
        "Runs this run's model on a photo of yours and lists, per layer, the units that fire most on it "
        "relative to their best probe image (strength = peak / the unit's largest probe-set activation)."
    )
    data, name = probe_source(catalog, run_id, image_id)
    if data is None:
        return
    run = catalog.run(run_id)
    started = time.perf_counter()
    try:
        picture = read_upload(data)
        device = app_device()
        model = cached_model(run.model, run.config.get("weights"), str(device))
    except UserError as error:
        st.warning(markdown_text(f"{error}."))
        return
    units = catalog.units(run_id)
    result: ProbeResult = probe(model, picture, units)
    best = strongest(result, PER_LAYER)
    described = image_descriptions(catalog, best)
    st.caption(
        f"{name}: {len(best)} unit(s) above their threshold shown, probed in {time.perf_counter() - started:.2f} s "
        f"on {device}"
    )

    def draw(row):
        return jpeg(highlight(
            result.thumbnail, row.amap, row.threshold, SHOWN
        )), f"strength {row.strength:.2f} · peak {row.peak:.2f}"

    tiles(described, draw)


def image_descriptions(catalog: Catalog, units: pd.DataFrame) -> pd.DataFrame:
    """The probe's units with their descriptions (by the catalog's main describer)."""
    texts = descriptions_of(catalog, units.unit_id.tolist(), default_describer(catalog))
    return units.merge(texts, on="unit_id", how="left")


def main() -> None:
    st.title("Image")
    catalog = open_catalog()
    if catalog is None:
        st.stop()
    runs = catalog.runs().run_id.tolist()
    run_id = run_choice(runs)
    basket()
    raw = st.query_params.get("image")
    image_id = int(raw) if raw is not None and raw.isdigit() and len(raw) < 19 else None
    if image_id is not None:
        stored_image_units(catalog, run_id, image_id)
    else:
        st.info("Open an image from a unit's exemplars, or upload a photo below.")
    live_probe(catalog, run_id, image_id)


main()
