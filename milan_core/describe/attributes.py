"""Low-level attributes inside exemplar masks: colour terms, orientation and texture, position, size.

Early layers respond to colours, edges and where things are rather than to objects, so these are
the evidence for them. Everything is measured per exemplar in batches (scatter-adds of per-pixel
labels weighted by the mask), then averaged per unit with the exemplar weights, giving each
attribute a probability-like value in 0..1 that ``compose`` turns into candidate phrases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from milan_core.describe.base import UnitView
from milan_core.describe.regions import ExemplarTable, exemplar_weights

#: Basic colour terms (Berlin and Kay's eleven).
COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
#: Orientation of the *lines* (perpendicular to the gradient).
ORIENTATIONS = ("horizontal", "vertical", "diagonal")
POSITIONS = ("top", "middle", "bottom")
#: Scenes a colour in a place suggests (stuff is described by colour and position together).
SCENES = {("blue", "top"): "blue sky", ("green", "bottom"): "green grass", ("white", "bottom"): "white snow"}
EDGE_SCALE = 0.1  # mean gradient magnitude (pixels in 0..1) at which a region counts as half edges


BORDERS = ("left", "right", "top", "bottom")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
BORDER_BAND = 8  # the outer 1/8 of the side on each border counts as "the edge of the image"
CORNER_BAND = 4  # a corner is the square of 1/4 of the side there
HIGHLIGHT_SIZE = 7  # a highlight is smaller than this square (of a 112-pixel view) ...
HIGHLIGHT_LIFT = 0.2  # ... this much brighter than around it ...
HIGHLIGHT_VALUE = 0.7  # ... and at least this bright
HIGHLIGHT_FULL = 0.05  # highlights are small: a region with this share of highlight pixels is "highlights"
STRONG_EDGE = 0.25  # gradient magnitude of a sharp light/dark boundary (pixels in 0..1)


@dataclass(frozen=True)
class Attributes:
    """Per-unit attribute values, each (U, len(names)) or (U,) in 0..1."""

    colours: torch.Tensor
    orientations: torch.Tensor
    edges: torch.Tensor  # (U,) share of edge energy: the region is made of lines, not flat colour
    positions: torch.Tensor
    area: torch.Tensor  # (U,) mean share of the image the masks cover
    borders: torch.Tensor  # (U, 4) share of the masks in the outer band of each side of the image
    corners: torch.Tensor  # (U, 4) share of the masks in each corner square
    highlights: torch.Tensor  # (U,) highlight pixels in the masks (brighter than around them), HIGHLIGHT_FULL = 1
    boundaries: torch.Tensor  # (U,) share of the masks on sharp light/dark boundaries
    lightness: torch.Tensor  # (U, 4) mean brightness (HSV value), saturation, darkness, smoothness in the masks


def colour_terms(pixels: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, H, W) index into ``COLOURS`` by hue, saturation and value."""
    rgb = pixels.float() / 255.0
    value, _ = rgb.max(-1)
    low, _ = rgb.min(-1)
    chroma = value - low
    saturation = chroma / value.clamp_min(1e-6)
    r, g, b = rgb.unbind(-1)
    safe = chroma.clamp_min(1e-6)
    hue = torch.where(
        value == r, ((g - b) / safe) % 6, torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4)
    ) * 60.0
    bounds = torch.tensor([15.0, 40.0, 70.0, 170.0, 260.0, 300.0, 345.0])
    hue_terms = torch.tensor([3, 4, 5, 6, 7, 8, 9, 3])  # red orange yellow green blue purple pink red
    terms = hue_terms[torch.bucketize(hue, bounds, right=True)]
    terms = torch.where((terms == 3) | (terms == 4), torch.where(value < 0.6, 10, terms), terms)  # dark: brown
    grey = torch.where(value > 0.8, 1, 2)
    terms = torch.where(saturation < 0.2, grey, terms)
    return torch.where(value < 0.2, 0, terms)


def orientation_terms(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W, 3) uint8 -> (line orientation index into ``ORIENTATIONS``, gradient magnitude)."""
    grey = pixels.float().mean(-1)[:, None] / 255.0
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4.0
    kernels = torch.stack([sobel, sobel.T])[:, None]
    gx, gy = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels).unbind(1)
    magnitude = torch.hypot(gx, gy)
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0  # gradient direction; lines run across it
    # gradient near vertical (90°) -> horizontal lines; near 0/180 -> vertical lines; else diagonal
    index = torch.where((angle > 67.5) & (angle < 112.5), 0, torch.where((angle < 22.5) | (angle > 157.5), 1, 2))
    return index, magnitude


def highlight_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, H, W) bool: small bright spots, the way a specular highlight is.

    A white top-hat: brightness minus its morphological opening by a ``HIGHLIGHT_SIZE`` square
    keeps what is brighter than around it *and* smaller than the square, so a white wall or the
    white squares of a chessboard are not highlights, a glint on metal or an eye is.
    """
    value = pixels.float().amax(-1)[:, None] / 255.0
    pad = HIGHLIGHT_SIZE // 2
    eroded = -F.max_pool2d(-F.pad(value, (pad,) * 4, mode="replicate"), HIGHLIGHT_SIZE, stride=1)
    opened = F.max_pool2d(F.pad(eroded, (pad,) * 4, mode="replicate"), HIGHLIGHT_SIZE, stride=1)
    return ((value - opened > HIGHLIGHT_LIFT) & (value > HIGHLIGHT_VALUE))[:, 0]


def _masked_sums(labels: torch.Tensor, weights: torch.Tensor, n: int) -> torch.Tensor:
    """(m, P) labels in [0, n), (m, P) weights -> (m, n) total weight of each label."""
    return torch.zeros(labels.shape[0], n).scatter_add_(1, labels, weights)


def _border_shares(masks: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor,
                   area: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shares of each (m, S, S) mask in the four border bands and the four corners, from its row
    and column sums and one pooling into corner squares (each full-size sum costs a pass)."""
    size = masks.shape[1]
    band = max(1, size // BORDER_BAND)
    borders = torch.stack([columns[:, :band].sum(1), columns[:, -band:].sum(1),
                           rows[:, :band].sum(1), rows[:, -band:].sum(1)], 1)
    squares = F.avg_pool2d(masks[:, None], size // CORNER_BAND)[:, 0] * (size // CORNER_BAND) ** 2
    corners = torch.stack([squares[:, 0, 0], squares[:, 0, -1], squares[:, -1, 0], squares[:, -1, -1]], 1)
    return borders / area[:, None], corners / area[:, None]


def measure(units: Sequence[UnitView], views: dict[str, np.ndarray]) -> Attributes:
    """Attributes of each unit's exemplar regions; ``views`` maps path -> (S, S, 3) uint8 view.

    Each pixel gets one joint label, colour x line orientation x highlight x sharp boundary, so a
    chunk of exemplars gathers its images' labels once (the gather is the costly step) and two
    scatter-adds sum that label under the mask and under the mask's edge energy: colours,
    orientations, highlights and boundaries are their marginals. Position, borders and corners
    need no labels: they are sums of the mask over rows, columns and corner squares.
    """
    table = ExemplarTable.of(units).reaching()
    paths = sorted(views)
    row = {p: i for i, p in enumerate(paths)}
    pixels = torch.from_numpy(np.stack([views[p] for p in paths]))
    size = pixels.shape[1]
    orient, magnitude = orientation_terms(pixels)
    flags = highlight_pixels(pixels).long() * 2 + (magnitude > STRONG_EDGE).long()
    joint = ((colour_terms(pixels) * len(ORIENTATIONS) + orient) * 4 + flags).flatten(1)  # (N, S*S)
    magnitude = magnitude.flatten(1)
    rgb = pixels.float() / 255.0
    value = rgb.amax(-1)
    shade = torch.stack([value, (value - rgb.amin(-1)) / value.clamp_min(1e-6), 1.0 - value], 1).flatten(2)
    image_index = torch.tensor([row[p] for p in table.paths], dtype=torch.long)
    third = (torch.arange(size) * 3 // size).clamp(max=2)  # the row's position: top, middle, bottom
    shape = (len(COLOURS), len(ORIENTATIONS), 2, 2)  # colour, orientation, highlight, sharp boundary
    n_labels = int(np.prod(shape))
    names = ("colours", "orientations", "edges", "positions", "area", "borders", "corners", "highlights", "boundaries",
             "lightness")
    per_exemplar: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for part, masks in table.masks(size):
        masks = masks.float()
        flat = masks.flatten(1)
        area = flat.sum(1).clamp_min(1.0)
        images = image_index[part]
        labels = joint[images]
        covered = _masked_sums(labels, flat, n_labels).view(-1, *shape)
        energy = _masked_sums(labels, flat * magnitude[images], n_labels).view(-1, *shape)
        total = energy.sum((1, 2, 3, 4)).clamp_min(1e-6)
        per_exemplar["colours"].append(covered.sum((2, 3, 4)) / area[:, None])
        per_exemplar["orientations"].append(energy.sum((1, 3, 4)) / total[:, None])
        mean_edge = total / area
        per_exemplar["edges"].append(mean_edge / (mean_edge + EDGE_SCALE))
        rows, columns = masks.sum(2), masks.sum(1)
        thirds = torch.zeros(len(masks), len(POSITIONS)).index_add_(1, third, rows)
        per_exemplar["positions"].append(thirds / area[:, None])
        per_exemplar["area"].append(rows.sum(1) / flat.shape[1])
        borders, corners = _border_shares(masks, rows, columns, area)
        per_exemplar["borders"].append(borders)
        per_exemplar["corners"].append(corners)
        per_exemplar["highlights"].append((covered[:, :, :, 1].sum((1, 2, 3)) / area / HIGHLIGHT_FULL).clamp(max=1.0))
        per_exemplar["boundaries"].append(covered[:, :, :, :, 1].sum((1, 2, 3)) / area)
        smooth = (flat.sum(1) > 0) * EDGE_SCALE / (mean_edge + EDGE_SCALE)  # no mask: no evidence of smoothness
        shades = torch.einsum("mcp,mp->mc", shade[images], flat) / area[:, None]
        per_exemplar["lightness"].append(torch.cat([shades, smooth[:, None]], 1))
    weights = exemplar_weights(table, len(units))

    def per_unit(values: torch.Tensor) -> torch.Tensor:
        weighted = values * (weights[:, None] if values.dim() == 2 else weights)
        return torch.zeros((len(units), *values.shape[1:])).index_add_(0, table.unit_index, weighted)

    return Attributes(**{name: per_unit(torch.cat(parts)) for name, parts in per_exemplar.items()})


@dataclass(frozen=True)
class PhraseTable:
    """Every phrase of the vocabulary with its kind of evidence and its value for every unit."""

    texts: list[str]
    kinds: list[str]
    values: torch.Tensor  # (U, len(texts)) in 0..1


def _group(texts: list[str], kind: str, values: torch.Tensor) -> tuple[list[str], list[str], torch.Tensor]:
    return texts, [kind] * len(texts), values.reshape(len(values), len(texts)).clamp(0.0, 1.0)


def phrase_table(a: Attributes) -> PhraseTable:
    """The value of every phrase for every unit, from its attribute values, all units at once.

    A phrase's value is the product of its parts (they are measured independently), so a compound
    is never more likely than its words; the prior rewards it when the combination is rare.
    Phrases say what people say of such regions: "the right edge of the image", "corners of the
    image", "bright highlights on surfaces", "sharp light and dark boundaries". A region's size
    alone is not one of them: "large areas" says how coarse the layer's maps are, not what the
    unit sees, and people describe what a large region shows (of the 165 annotated units, one
    annotation starts from the size, "large upper-centre regions: animal faces, vehicle windows
    and tops"; the 7 units that won "large areas" scored 0.17 against their annotations).
    Size still qualifies a phrase ("small bright spots"). The highlight top-hat keeps whatever
    its square does not fit in, thin bright lines as well as spots, so highlights whose edges run
    one way are "thin bright lines" (strings, wires, slivers along edges).
    """
    pairs = [(i, j) for i in range(len(COLOURS)) for j in range(len(COLOURS)) if i != j]
    first, second = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    # two colours sharing a region half and half give 1; the more common one is named first
    pair = 4.0 * a.colours[:, first] * a.colours[:, second] * (a.colours[:, first] >= a.colours[:, second])
    lines = a.orientations * a.edges[:, None]
    horizontal, vertical = a.orientations[:, 0], a.orientations[:, 1]
    spread = 1.0 - 1.5 * (a.orientations.amax(1) - 1.0 / 3.0)  # 1: lines of every orientation (curves)
    small = (1.0 - a.area / 0.1).clamp_min(0.0)
    brightness, saturation, darkness, smooth = a.lightness.unbind(1)
    bright, dark = ((brightness - 0.5) / 0.4).clamp(0.0, 1.0), ((darkness - 0.5) / 0.4).clamp(0.0, 1.0)
    position = {p: a.positions[:, i] for i, p in enumerate(POSITIONS)}
    colour = {c: a.colours[:, i] for i, c in enumerate(COLOURS)}
    corner = {c: a.corners[:, i] for i, c in enumerate(CORNERS)}
    pair_names = [f"{COLOURS[i]} and {COLOURS[j]}" for i, j in pairs]
    groups = [
        _group(list(COLOURS), "colour", a.colours),
        _group(pair_names, "colour", pair),
        _group([f"{o} lines" for o in ORIENTATIONS], "texture", lines),
        _group([f"{p} {o} stripes" for p in pair_names for o in ORIENTATIONS], "texture",
               pair[:, :, None] * lines[:, None, :]),
        _group(["checkered patterns and grids"], "texture", 4.0 * horizontal * vertical * a.edges),
        _group(["bright highlights on surfaces"], "texture", a.highlights),
        _group([f"{c} spots" for c in COLOURS], "shape", small[:, None] * a.colours),
        _group(["small bright spots", "thin bright lines"], "shape",
               torch.stack([small * a.highlights.sqrt(), small * a.highlights.sqrt() * (1.0 - spread)], 1)),
        _group(["small pale patches", "small bright patches"], "shape",
               torch.stack([small * bright * (1.0 - saturation), small * bright], 1)),
        _group(["bright patches", "dark areas", "pale patches", "smooth plain areas"], "colour",
               torch.stack([bright, dark, bright * (1.0 - saturation), smooth], 1)),
        _group(["edges of objects", "outlines of objects", "sharp light and dark boundaries"], "shape",
               torch.stack([a.edges, a.edges * spread, a.boundaries], 1)),
        _group([f"the {p} of the image" for p in ("top", "bottom")], "position",
               torch.stack([position["top"], position["bottom"]], 1)),
        _group([f"the {b} edge of the image" for b in BORDERS], "position", a.borders),
        _group(["the borders of the image"], "position", a.borders.sum(1)),
        _group([f"the {c} corner of the image" for c in CORNERS], "position", a.corners),
        _group(["corners of the image", "the top corners of the image", "the bottom corners of the image"], "position",
               torch.stack([a.corners.sum(1), corner["top-left"] + corner["top-right"],
                            corner["bottom-left"] + corner["bottom-right"]], 1)),
        _group(list(SCENES.values()), "scene", torch.stack([colour[c] * position[p] for c, p in SCENES], 1)),
    ]
    values = torch.cat([g[2] for g in groups], 1)
    return PhraseTable([t for g in groups for t in g[0]], [k for g in groups for k in g[1]], values)


def phrases() -> list[str]:
    """Every text ``phrase_table`` can propose: a finite vocabulary, so its search vectors can be
    made once and cached (``milan_core.embedding.cached_embed``)."""
    return phrase_table(empty_attributes()).texts


def empty_attributes(n: int = 0) -> Attributes:
    """Attributes of ``n`` units with no evidence at all (every value 0)."""
    widths = {"colours": len(COLOURS), "orientations": len(ORIENTATIONS), "positions": len(POSITIONS),
              "borders": len(BORDERS), "corners": len(CORNERS), "lightness": 4}
    return Attributes(**{name: torch.zeros(n, widths[name]) if name in widths else torch.zeros(n)
                         for name in Attributes.__dataclass_fields__})
