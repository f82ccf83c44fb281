"""catalog_app.render: the exemplar pictures drawn from a real catalog's thumbnails and maps."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from catalog_app.render import (
    DIM,
    OUTLINE,
    grid,
    highlight,
    highlighted_exemplars,
    outline,
    strip,
)
from milan_core.catalog import Catalog
from milan_core.exemplars import mask


def test_outline_is_the_regions_rim() -> None:
    region = np.zeros((6, 6), dtype=bool)
    region[1:5, 1:5] = True
    rim = outline(region)
    assert rim[1, 1:5].all() and rim[4, 1:5].all() and rim[1:5, 1].all() and rim[1:5, 4].all()
    assert not rim[2:4, 2:4].any() and not (rim & ~region).any()


def test_highlight_dims_the_outside_and_outlines_the_region(described_catalog: Path) -> None:
    with Catalog(described_catalog) as catalog:
        unit_id = catalog.unit_id(catalog.run().run_id, "blocks.2:3")
        exemplar = catalog.exemplars(unit_id).iloc[0]
        thumbnail = catalog.image(int(exemplar.image_id)).thumbnail
    original = np.asarray(Image.open(io.BytesIO(thumbnail)).convert("RGB"))
    drawn = np.asarray(highlight(thumbnail, exemplar["map"], float(exemplar.threshold)))
    region = mask(exemplar["map"], float(exemplar.threshold), original.shape[0])
    rim = outline(region)
    assert 0 < region.sum() < region.size
    assert (drawn[rim] == OUTLINE).all()
    inside = region & ~rim
    assert (drawn[inside] == original[inside]).all()
    assert np.allclose(drawn[~region], (original[~region] * DIM).astype(np.uint8))


def _shown_pixels(drawn: Image.Image, thumbnail: bytes) -> int:
    """Pixels drawn as region (kept or outlined) rather than dimmed."""
    original = np.asarray(Image.open(io.BytesIO(thumbnail)).convert("RGB")).astype(int)
    dimmed = (original * DIM).astype(np.uint8).astype(int)
    return int((np.abs(np.asarray(drawn).astype(int) - dimmed).max(-1) > 1).sum())


def test_a_lower_threshold_shows_a_larger_region(described_catalog: Path) -> None:
    with Catalog(described_catalog) as catalog:
        unit_id = catalog.unit_id(catalog.run().run_id, "blocks.6:17")
        exemplar = catalog.exemplars(unit_id).iloc[0]
        thumbnail = catalog.image(int(exemplar.image_id)).thumbnail
        level = float(exemplar.threshold)
        between = float(np.quantile(exemplar["map"], 0.25))  # below the unit's threshold, above the map's minimum
        default = highlighted_exemplars(catalog, unit_id, k=2)
        lower = highlighted_exemplars(catalog, unit_id, threshold=between, k=2)
        lowered = highlighted_exemplars(catalog, unit_id, threshold=-1e9, k=2, size=224)
    assert between < level
    assert len(default) == 2 and default[0][1].startswith("#1 ")
    at_default, at_lower = _shown_pixels(default[0][0], thumbnail), _shown_pixels(lower[0][0], thumbnail)
    assert 0 < at_default < at_lower <= 112 * 112  # the region grows as the threshold falls
    assert at_lower >= mask(exemplar["map"], between, 112).sum() * 0.9
    assert lowered[0][0].size == (224, 224)
    kept = np.asarray(lowered[0][0])
    assert not (kept[2:-2, 2:-2] == OUTLINE).all(axis=-1).any()  # everything is inside: no rim but the edge


def test_strip_puts_pictures_side_by_side() -> None:
    pictures = [Image.new("RGB", (112, 112), "red"), Image.new("RGB", (112, 112), "blue")]
    joined = strip(pictures, gap=4)
    assert joined.size == (228, 112)
    assert joined.getpixel((0, 0)) == (255, 0, 0) and joined.getpixel((227, 111)) == (0, 0, 255)
    assert joined.getpixel((113, 50)) == (255, 255, 255)


def test_grid_fills_rows_and_leaves_empty_cells_white() -> None:
    pictures = [Image.new("RGB", (10, 10), colour) for colour in ("red", "green", "blue")]
    joined = grid(pictures, columns=2, rows=2, gap=2)
    assert joined.size == (22, 22)
    assert joined.getpixel((0, 0)) == (255, 0, 0) and joined.getpixel((12, 0)) == (0, 128, 0)
    assert joined.getpixel((0, 12)) == (0, 0, 255) and joined.getpixel((12, 12)) == (255, 255, 255)
