"""Exemplar pictures: a thumbnail with the unit's region shown (outside dimmed, region outlined).

The region is where the exemplar's stored activation map, upsampled to the picture, exceeds the
unit's threshold (``milan_core.exemplars.mask``) — the same rule the describers use, so what a person
sees is what was described. No Streamlit here, so the drawing tests and caches simply.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from milan_core.catalog import Catalog
from milan_core.exemplars import mask

#: Brightness kept outside the region, and the outline's colour (amber reads on photos).
DIM = 0.3
OUTLINE = np.array([255, 176, 0], dtype=np.uint8)
GAP = 4


def outline(region: np.ndarray) -> np.ndarray:
    """The region's boundary pixels: inside the region with a 4-neighbour outside it (or the edge)."""
    padded = np.pad(region, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return region & ~interior


def highlight(thumbnail: bytes, amap: np.ndarray, threshold: float, size: int | None = None) -> Image.Image:
    """The thumbnail (at ``size``, default its own) with the outside dimmed and the region outlined."""
    picture = Image.open(io.BytesIO(thumbnail)).convert("RGB")
    if size is not None and size != picture.width:
        picture = picture.resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(picture)
    region = mask(amap, threshold, pixels.shape[0])
    shown = np.where(region[..., None], pixels, (pixels * DIM).astype(np.uint8))
    shown[outline(region)] = OUTLINE
    return Image.fromarray(shown)


def strip(pictures: list[Image.Image], gap: int = GAP) -> Image.Image:
    """Pictures side by side on white, ``gap`` pixels apart (one image per card draws faster)."""
    if not pictures:
        return Image.new("RGB", (1, 1), "white")
    height = max(p.height for p in pictures)
    canvas = Image.new("RGB", (sum(p.width for p in pictures) + gap * (len(pictures) - 1), height), "white")
    left = 0
    for picture in pictures:
        canvas.paste(picture, (left, 0))
        left += picture.width + gap
    return canvas


def exemplars_with_thumbnails(catalog: Catalog, unit_id: int, k: int | None = None) -> pd.DataFrame:
    """A unit's first ``k`` exemplars (all with None): decoded maps, threshold, path and thumbnail."""
    frame = catalog.exemplars(unit_id)
    if k is not None:
        frame = frame.head(k)
    if frame.empty:
        return frame.assign(thumbnail=[])
    thumbnails = catalog.query(
        "SELECT image_id, thumbnail FROM images WHERE list_contains(?, image_id)",
        [[int(i) for i in frame.image_id]],
    )
    by_id = dict(zip(thumbnails.image_id, thumbnails.thumbnail))
    return frame.assign(thumbnail=[bytes(by_id[i]) for i in frame.image_id])


def highlighted_exemplars(
    catalog: Catalog, unit_id: int, threshold: float | None = None, k: int | None = None, size: int | None = None
) -> list[tuple[Image.Image, str]]:
    """The unit's exemplars drawn with their regions at ``threshold`` (default: the unit's), with captions."""
    frame = exemplars_with_thumbnails(catalog, unit_id, k)
    drawn = []
    for row in frame.itertuples():
        level = row.threshold if threshold is None else threshold
        caption = f"#{row.rank + 1} {Path(row.path).stem} ({row.activation:.2f})"
        drawn.append((highlight(row.thumbnail, row.map, level, size), caption))
    return drawn
