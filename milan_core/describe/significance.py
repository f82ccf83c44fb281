"""What chance gives: random units (a layer's exemplar masks on other images), each unit measured against them.

A description's evidence means something only against what the layer's masks would show
anyway: in a deep layer whose maps are coarse every unit's masks cover much of the image, and on photos of
dogs any region may well be a dog. ``null_units`` draws, per layer, units whose k exemplars are
masks of that layer laid on other exemplar images of the layer (each mask with its own unit's
threshold, so its shape and weight are the ones it had); a describer measures them exactly as it
measures the real units. ``against_chance`` then gives every (unit, description) two numbers:

- the *excess*: how much more the unit's regions show ``d`` than a random unit's regions of the
  same layer do on average (``p(d|E) - mean``), which puts every kind of evidence — objects,
  colours, positions, shapes — on one scale: a share of regions beyond chance;
- the *significance*: the permutation p-value ``(1 + #{random units >= the unit}) / (1 + B)``,
  how often random regions of the layer would give this much evidence or more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from milan_core.describe.base import Exemplar, UnitView

NULL_UNITS = 64  # random units per layer: p-values from 1/65 up; measuring them costs like 64 units
MIN_EXCESS = 1e-4  # the excess of a description no better than chance (its log stays finite)


def null_units(units: Sequence[UnitView], per_layer: int = NULL_UNITS, seed: int = 0) -> tuple[UnitView, ...]:
    """``per_layer`` random units for every layer: k of the layer's exemplar masks (drawn without
    replacement), each laid on another exemplar image of the layer drawn at random — among the
    exemplars that reach their unit's threshold (all of them, if none does): those are the images
    a unit's regions lie on, and the ones the describers measure (``parts.detect_parts``).

    Pairing masks with other images is the permutation that breaks the one link a unit claims —
    between where it fires and what is there — and keeps everything else as the layer has it: the
    masks' sizes and positions (so "the top of the image" is only as likely as the layer makes
    it) and the kind of photo the layer's units pick. Keeping each region on its
    own image instead would measure the layer's *other units* as chance: in a deep layer where
    most units fire on animal heads, a head unit would look like chance. Maps and activations are
    shifted by their own unit's threshold and the random unit's threshold is 0, so each mask keeps
    its shape (upsampling is linear) and its weight. Ids are negative: they never reach the catalog.
    """
    rng = np.random.default_rng(seed)
    pools: dict[str, list[Exemplar]] = {}
    sizes: dict[str, int] = {}
    for unit in units:
        pools.setdefault(unit.layer, []).extend(
            Exemplar(e.rank, e.image_id, e.path, e.activation - unit.threshold, e.map - np.float32(unit.threshold))
            for e in unit.exemplars
        )
        sizes[unit.layer] = max(sizes.get(unit.layer, 0), len(unit.exemplars))
    made: list[UnitView] = []
    for layer, pool in pools.items():
        places = [i for i, e in enumerate(pool) if e.activation >= 0] or list(range(len(pool)))
        for _ in range(per_layer):
            drawn = rng.choice(len(pool), size=min(sizes[layer], len(pool)), replace=False)
            images = rng.choice(places, size=len(drawn))
            exemplars = tuple(sorted((Exemplar(pool[m].rank, pool[i].image_id, pool[i].path, pool[m].activation,
                                               pool[m].map) for m, i in zip(drawn, images)),
                                     key=lambda e: -e.activation))
            made.append(UnitView(-1 - len(made), layer, -1 - len(made), 0.0, exemplars))
    return tuple(made)


@dataclass(frozen=True)
class Chance:
    """Every unit's evidence for every description, against random units of its layer."""

    mean: torch.Tensor  # (U, D) what a random unit of the layer shows on average
    excess: torch.Tensor  # (U, D) value - mean, at least MIN_EXCESS
    significance: torch.Tensor  # (U, D) permutation p-value


def against_chance(values: torch.Tensor, layers: Sequence[str], null_values: torch.Tensor,
                   null_layers: Sequence[str]) -> Chance:
    """(U, D) values of the units, (B, D) values of the random units -> ``Chance``, layer by layer.

    The p-value counts random units at or above each value with one sort and one batched
    ``searchsorted`` per layer (no loop over units or descriptions). A layer without random units
    gets mean 0 and p-value 1: no evidence of chance, so none of significance either.
    """
    mean = torch.zeros_like(values)
    significance = torch.ones_like(values)
    layer_rows = _rows_by(layers)
    null_rows = _rows_by(null_layers)
    for layer, rows in layer_rows.items():
        if layer not in null_rows:
            continue
        null = null_values[null_rows[layer]]  # (B, D)
        mean[rows] = null.mean(0)
        ordered = null.T.contiguous().sort(1).values  # (D, B)
        below = torch.searchsorted(ordered, values[rows].T.contiguous(), side="left")  # (D, n): nulls < value
        significance[rows] = ((1 + null.shape[0] - below) / (1 + null.shape[0])).T.float()
    return Chance(mean, (values - mean).clamp_min(MIN_EXCESS), significance)


def _rows_by(layers: Sequence[str]) -> dict[str, torch.Tensor]:
    grouped: dict[str, list[int]] = {}
    for i, layer in enumerate(layers):
        grouped.setdefault(layer, []).append(i)
    return {layer: torch.tensor(rows, dtype=torch.long) for layer, rows in grouped.items()}
