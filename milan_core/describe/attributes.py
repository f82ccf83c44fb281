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

from milan_core.describe.base import Candidate, UnitView
from milan_core.describe.regions import ExemplarTable, exemplar_weights

#: Basic colour terms (Berlin and Kay's eleven).
COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
#: Orientation of the *lines* (perpendicular to the gradient).
ORIENTATIONS = ("horizontal", "vertical", "diagonal")
POSITIONS = ("top", "middle", "bottom")
#: Scenes a colour in a place suggests (stuff is described by colour and position together).
SCENES = {("blue", "top"): "blue sky", ("green", "bottom"): "green grass", ("white", "bottom"): "white snow"}
EDGE_SCALE = 0.1  # mean gradient magnitude (pixels in 0..1) at which a region counts as half edges


@dataclass(frozen=True)
class Attributes:
    """Per-unit attribute values, each (U, len(names)) in 0..1."""

    colours: torch.Tensor
    orientations: torch.Tensor
    edges: torch.Tensor  # (U,) share of edge energy: the region is made of lines, not flat colour
    positions: torch.Tensor
    area: torch.Tensor  # (U,) mean share of the image the masks cover


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


def _masked_sums(labels: torch.Tensor, weights: torch.Tensor, n: int) -> torch.Tensor:
    """(m, P) labels in [0, n), (m, P) weights -> (m, n) total weight of each label."""
    return torch.zeros(labels.shape[0], n).scatter_add_(1, labels, weights)


def measure(units: Sequence[UnitView], views: dict[str, np.ndarray]) -> Attributes:
    """Attributes of each unit's exemplar regions; ``views`` maps path -> (S, S, 3) uint8 view.

    Each pixel gets one joint label, colour x line orientation, so a chunk of exemplars gathers
    its images' labels once (the gather is the costly step) and two scatter-adds sum that label
    under the mask and under the mask's edge energy: colours and orientations are their marginals.
    Position needs no labels: it is the mask's row sums, grouped into thirds.
    """
    table = ExemplarTable.of(units).reaching()
    paths = sorted(views)
    row = {p: i for i, p in enumerate(paths)}
    pixels = torch.from_numpy(np.stack([views[p] for p in paths]))
    size = pixels.shape[1]
    orient, magnitude = orientation_terms(pixels)
    joint = (colour_terms(pixels) * len(ORIENTATIONS) + orient).flatten(1)  # (N, S*S)
    magnitude = magnitude.flatten(1)
    image_index = torch.tensor([row[p] for p in table.paths], dtype=torch.long)
    third = (torch.arange(size) * 3 // size).clamp(max=2)  # the row's position: top, middle, bottom
    shape = (len(COLOURS), len(ORIENTATIONS))
    n_labels = shape[0] * shape[1]
    per_exemplar = {name: [] for name in ("colours", "orientations", "edges", "positions", "area")}
    for part, masks in table.masks(size):
        masks = masks.float()
        flat = masks.flatten(1)
        area = flat.sum(1).clamp_min(1.0)
        images = image_index[part]
        labels = joint[images]
        covered = _masked_sums(labels, flat, n_labels).view(-1, *shape)
        energy = _masked_sums(labels, flat * magnitude[images], n_labels).view(-1, *shape)
        total = energy.sum((1, 2)).clamp_min(1e-6)
        per_exemplar["colours"].append(covered.sum(2) / area[:, None])
        per_exemplar["orientations"].append(energy.sum(1) / total[:, None])
        mean_edge = total / area
        per_exemplar["edges"].append(mean_edge / (mean_edge + EDGE_SCALE))
        rows = torch.zeros(len(masks), len(POSITIONS)).index_add_(1, third, masks.sum(2))
        per_exemplar["positions"].append(rows / area[:, None])
        per_exemplar["area"].append(flat.mean(1))
    weights = exemplar_weights(table, len(units))

    def per_unit(values: torch.Tensor) -> torch.Tensor:
        weighted = values * (weights[:, None] if values.dim() == 2 else weights)
        return torch.zeros((len(units), *values.shape[1:])).index_add_(0, table.unit_index, weighted)

    return Attributes(**{name: per_unit(torch.cat(parts)) for name, parts in per_exemplar.items()})


def phrases() -> list[str]:
    """Every text ``compose`` can propose: a finite vocabulary, so its search vectors can be made
    once and cached (``milan_core.embedding.cached_embed``)."""
    pairs = [(first, second) for first in COLOURS for second in COLOURS if first != second]
    return [
        *COLOURS, *(f"{first} and {second}" for first, second in pairs),
        *(f"{o} lines" for o in ORIENTATIONS),
        *(f"{first} and {second} {o} stripes" for first, second in pairs for o in ORIENTATIONS),
        *(f"{c} spots" for c in COLOURS), "large areas",
        *(f"the {p} of the image" for p in POSITIONS if p != "middle"), *SCENES.values(),
    ]


def _candidate(text: str, p: float, kind: str, **evidence: object) -> Candidate:
    return Candidate(text, float(np.log(max(p, 1e-6))), kind, {"attributes": evidence})


def compose(attributes: Attributes, unit: int) -> list[Candidate]:
    """Candidate phrases for one unit from its attribute values (PMI chooses among them).

    A phrase's p(d|E) is the product of its parts (they are measured independently), so a compound
    is never more likely than its words; the prior rewards it when the combination is rare. Size
    alone is no candidate: thresholded masks are small for almost every unit, which says nothing.
    """
    colours = {c: float(v) for c, v in zip(COLOURS, attributes.colours[unit])}
    orient = {o: float(v) for o, v in zip(ORIENTATIONS, attributes.orientations[unit])}
    edges, area = float(attributes.edges[unit]), float(attributes.area[unit])
    position = {p: float(v) for p, v in zip(POSITIONS, attributes.positions[unit])}
    first, second = sorted(colours, key=colours.get, reverse=True)[:2]
    pair = colours[first] * colours[second] * 4.0  # two colours sharing a region half and half: 1
    best_orient = max(orient, key=orient.get)
    small = max(0.0, 1.0 - area / 0.1)
    candidates = [_candidate(c, v, "colour", colour=c, share=round(v, 3)) for c, v in colours.items() if v > 0.05]
    candidates += [
        _candidate(f"{first} and {second}", pair, "colour", colours=[first, second]),
        *(_candidate(f"{o} lines", v * edges, "texture", orientation=o, share=round(v, 3), edges=round(edges, 3))
          for o, v in orient.items()),
        _candidate(f"{first} and {second} {best_orient} stripes", pair * orient[best_orient] * edges, "texture",
                   colours=[first, second], orientation=best_orient, edges=round(edges, 3)),
        _candidate(f"{first} spots", small * colours[first], "shape", area=round(area, 3), colour=first),
        _candidate("large areas", min(1.0, area / 0.3), "shape", area=round(area, 3)),
        *(_candidate(f"the {p} of the image", v, "position", position=p, share=round(v, 3))
          for p, v in position.items() if p != "middle"),
        *(_candidate(text, colours[c] * position[p], "scene", colour=c, position=p) for (c, p), text in SCENES.items()),
    ]
    return candidates
