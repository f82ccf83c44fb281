"""Exemplar regions in batches: every exemplar's mask (upsampled map above the unit's threshold).

Masks are computed for many exemplars at once with torch (chunked to bound memory), the same way
``milan_core.exemplars.mask`` does for one: bilinear upsampling, then the unit's threshold. Units of
layers without spatial maps (1x1: logits, pooled features) cover the whole image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from milan_core.describe.base import UnitView

CHUNK = 512
SAMPLES_PER_CELL = 8  # a pooled cell's share is measured on 8 x 8 points of the upsampled map
TIE_WEIGHT = 1e-6  # the weight of an exemplar exactly at the threshold


@dataclass(frozen=True)
class ExemplarTable:
    """All exemplars of some units, flattened: exemplar i belongs to ``unit_index[i]``."""

    unit_index: torch.Tensor  # (M,) long, index into the units given
    paths: list[str]
    activations: torch.Tensor  # (M,)
    thresholds: torch.Tensor  # (M,)
    maps: list[np.ndarray]
    whole: torch.Tensor  # (M,) bool: a 1x1 map, the exemplar is its whole image

    @classmethod
    def of(cls, units: Sequence[UnitView]) -> ExemplarTable:
        rows = [(i, e, u.threshold) for i, u in enumerate(units) for e in u.exemplars]
        return cls(
            unit_index=torch.tensor([r[0] for r in rows], dtype=torch.long),
            paths=[r[1].path for r in rows],
            activations=torch.tensor([r[1].activation for r in rows], dtype=torch.float32),
            thresholds=torch.tensor([r[2] for r in rows], dtype=torch.float32),
            maps=[r[1].map for r in rows],
            whole=torch.tensor([r[1].map.size == 1 for r in rows], dtype=torch.bool),
        )

    def __len__(self) -> int:
        return len(self.paths)

    def reaching(self) -> ExemplarTable:
        """Only the exemplars whose activation reaches the unit's threshold: the others have empty
        masks and no weight (``exemplar_weights``), so measuring them is wasted work. On a small
        probe set that is most of a deep layer's exemplars (77% of blocks.6's on 26 photos)."""
        keep = (self.activations >= self.thresholds).nonzero()[:, 0].tolist()
        return ExemplarTable(
            unit_index=self.unit_index[keep], paths=[self.paths[i] for i in keep],
            activations=self.activations[keep], thresholds=self.thresholds[keep],
            maps=[self.maps[i] for i in keep], whole=self.whole[keep],
        )

    def masks(self, size: int, pooled: int | None = None) -> Iterator[tuple[slice, torch.Tensor]]:
        """(slice, masks) chunks: (m, size, size) booleans, or with ``pooled`` the share of each
        cell of a ``pooled`` x ``pooled`` grid that the mask covers, (m, pooled, pooled) floats.

        Shares are measured on ``SAMPLES_PER_CELL``² points a cell: the same bilinear surface as the
        full-size mask, sampled more coarsely (a 7 x 7 grid of a 224-pixel view: 16 times less work).
        """
        if pooled is not None:
            size = min(size, pooled * SAMPLES_PER_CELL)
        for start in range(0, len(self), CHUNK):
            part = slice(start, min(start + CHUNK, len(self)))
            maps = [self.maps[i] for i in range(part.start, part.stop)]
            yield part, _chunk_masks(maps, self.thresholds[part], size, pooled)


def _chunk_masks(maps: list[np.ndarray], thresholds: torch.Tensor, size: int, pooled: int | None) -> torch.Tensor:
    """Masks of maps that may differ in shape (one layer's maps share one; groups are batched).

    A 1x1 map covers its whole image, so its mask (or pooled shares) is all ones, never computed.
    """
    side = pooled or size
    out = torch.zeros(len(maps), side, side, dtype=torch.bool if pooled is None else torch.float32)
    shapes: dict[tuple[int, ...], list[int]] = {}
    for i, amap in enumerate(maps):
        shapes.setdefault(amap.shape, []).append(i)
    for shape, indices in shapes.items():
        index = torch.tensor(indices)
        if shape == (1, 1):
            out[index] = 1
            continue
        stacked = torch.from_numpy(np.stack([maps[i] for i in indices]).astype(np.float32))[:, None]
        up = F.interpolate(stacked, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        masks = up > thresholds[index, None, None]
        out[index] = masks if pooled is None else F.adaptive_avg_pool2d(masks[:, None].float(), pooled)[:, 0]
    return out


def exemplar_weights(table: ExemplarTable, n_units: int) -> torch.Tensor:
    """(M,) weights summing to 1 within each unit: how much each exemplar speaks for the unit.

    The threshold is where the unit's concept begins (its masks are what lies above it), so an
    exemplar below it is no evidence. Above it, a unit with maps counts each exemplar's peak
    activation above the threshold: the regions differ, and a set of similar exemplars counts
    evenly. A whole-image unit (1x1: a logit, a pooled feature) has no region to say which part of
    its exemplars it means, and its activation is on a log scale (a logit is a log-odds), so its
    exemplars count as a softmax of their activations: the one photo of a logit unit's class
    outweighs its look-alikes unless they excite the unit almost as much.
    On a small probe set the threshold can equal the top activation; reaching it still counts.
    """
    reached = table.activations >= table.thresholds
    margin = (table.activations - table.thresholds).clamp_min(0.0) + TIE_WEIGHT * reached
    peak = torch.full((n_units,), -torch.inf).scatter_reduce_(0, table.unit_index, table.activations, "amax")
    softmax = torch.exp(table.activations - peak[table.unit_index]) * reached
    raw = torch.where(table.whole, softmax, margin)
    totals = torch.zeros(n_units).index_add_(0, table.unit_index, raw)
    return raw / totals[table.unit_index].clamp_min(1e-12)
