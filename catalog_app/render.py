"""Exemplar pictures: a thumbnail with the unit's region shown (outside dimmed, region outlined).

The region is where the exemplar's stored activation map, upsampled to the picture, exceeds the
unit's threshold — ``milan_core.exemplars.mask``, the describers' rule, so what a person sees is
what was described. It upsamples in numpy with the weights of torch's bilinear ``interpolate``
(tested equal to it): the app draws its pictures without importing torch, which took seconds on
this busy machine and held up the first page. The ``heatmap`` style lays the upsampled map itself
over the photo instead (red where the unit fires most), for regions too small to read when
dimmed. A whole-image unit (a 1x1 map: logits, pooled features) has no region to show: its
pictures are drawn as they are.
No Streamlit here, so the drawing tests and caches simply.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from milan_core.catalog import Catalog
from milan_core.catalog.browse import exemplar_rows
from milan_core.exemplars import dequantise, mask, upsample

#: Brightness kept outside the region, and the outline's colour (amber reads on photos).
DIM = 0.3
OUTLINE = np.array([255, 176, 0], dtype=np.uint8)
GAP = 4
HEAT = np.array([230, 30, 30], dtype=np.float32)
#: How the region is shown: outside dimmed and outlined, or the activation map as a heatmap.
STYLES = ("dim", "heatmap")
LEGEND = {
    "dim": "dimmed = below the unit's threshold (outside its region); amber line = the region's edge",
    "heatmap": "red = where the unit fires, stronger red = higher activation (above its threshold only)",
}


def outline(region: np.ndarray) -> np.ndarray:
    """The region's boundary pixels: inside the region with a 4-neighbour outside it (or the edge)."""
    padded = np.pad(region, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return region & ~interior


def thumbnail_at(thumbnail: bytes, size: int | None = None) -> Image.Image:
    """A stored JPEG thumbnail decoded to RGB, bicubically resized to ``size`` (default: its own)."""
    picture = Image.open(io.BytesIO(thumbnail)).convert("RGB")
    if size is not None and size != picture.width:
        picture = picture.resize((size, size), Image.Resampling.BICUBIC)
    return picture


@lru_cache(maxsize=8)
def dimmed_levels(dim: float) -> np.ndarray:
    """Each of the 256 pixel levels kept at ``dim`` of its brightness (``(level * dim)`` truncated,
    as uint8): looking them up costs a third of multiplying a picture in floats."""
    return (np.arange(256) * dim).astype(np.uint8)


def highlight(
    thumbnail: bytes,
    amap: np.ndarray,
    threshold: float,
    size: int | None = None,
    style: str = "dim",
    dim: float = DIM,
    outlined: bool = True,
) -> Image.Image:
    """The thumbnail (at ``size``, default its own) with the unit's region shown in ``style``: the
    outside kept at ``dim`` of its brightness and, if ``outlined``, the region's rim drawn (blind
    annotation sheets want no outline), or the ``heatmap``."""
    picture = thumbnail_at(thumbnail, size)
    if amap.size == 1:  # a whole-image unit: the region would be all or nothing
        return picture
    pixels = np.asarray(picture)
    if style == "heatmap":
        return Image.fromarray(heatmap(pixels, amap, threshold))
    region = mask(amap, threshold, pixels.shape[0])
    shown = np.where(region[..., None], pixels, dimmed_levels(dim)[pixels])
    if outlined:
        shown[outline(region)] = OUTLINE
    return Image.fromarray(shown)


def heatmap(pixels: np.ndarray, amap: np.ndarray, threshold: float) -> np.ndarray:
    """The photo with red laid over it in proportion to how far the upsampled map exceeds the threshold."""
    levels = upsample(amap, pixels.shape[0])
    top = max(float(levels.max()), threshold + 1e-6)
    alpha = (np.clip((levels - threshold) / (top - threshold), 0.0, 1.0) * 0.7)[..., None]
    return (pixels * (1 - alpha) + HEAT * alpha).astype(np.uint8)


#: JPEG quality of the pictures the app sends: Streamlit encodes a picture it is given at 100, three
#: times the bytes of 85 (a card's strip: 92 KB against 30 KB) and 2.5 times the time.
JPEG_QUALITY = 85


def jpeg(picture: Image.Image) -> bytes:
    """The picture as the JPEG the browser gets (Streamlit passes such bytes on as they are)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


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


def grid(pictures: list[Image.Image], columns: int, rows: int, gap: int = GAP) -> Image.Image:
    """Same-sized pictures in ``rows`` x ``columns`` cells on white, row by row; cells without a
    picture stay white, so every grid of one tile size has one size."""
    if not pictures:
        return Image.new("RGB", (1, 1), "white")
    width, height = pictures[0].size
    canvas = Image.new("RGB", (columns * width + (columns - 1) * gap, rows * height + (rows - 1) * gap), "white")
    for index, picture in enumerate(pictures[: columns * rows]):
        row, column = divmod(index, columns)
        canvas.paste(picture, (column * (width + gap), row * (height + gap)))
    return canvas


def draw_exemplars(
    rows: pd.DataFrame, threshold: float | None = None, size: int | None = None, style: str = "dim"
) -> list[tuple[Image.Image, str]]:
    """One unit's exemplar rows drawn with their regions at ``threshold`` (default: the unit's), with captions."""
    drawn = []
    for row in rows.itertuples():
        amap = dequantise(bytes(row.amap), row.amap_min, row.amap_max, row.map_height, row.map_width)
        level = row.threshold if threshold is None else threshold
        caption = f"#{row.rank + 1} {Path(row.path).stem} ({row.activation:.2f})"
        drawn.append((highlight(bytes(row.thumbnail), amap, level, size, style), caption))
    return drawn


def highlighted_exemplars(
    catalog: Catalog,
    unit_id: int,
    threshold: float | None = None,
    k: int | None = None,
    size: int | None = None,
    style: str = "dim",
) -> list[tuple[Image.Image, str]]:
    """A unit's exemplars drawn with their regions at ``threshold`` (default: the unit's), with captions."""
    return draw_exemplars(exemplar_rows(catalog, [unit_id], k), threshold, size, style)
