"""Random units of a layer, and units measured against them (excess over chance, permutation p-value)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from milan_core.describe.base import Exemplar, UnitView
from milan_core.describe.regions import ExemplarTable
from milan_core.describe.significance import MIN_EXCESS, against_chance, null_units


def _unit(unit: int, layer: str, threshold: float, images: range) -> UnitView:
    rng = np.random.default_rng(unit)
    maps = [rng.random((4, 4), dtype=np.float32) + threshold for _ in images]
    exemplars = tuple(Exemplar(r, i, f"{i}.png", threshold + 1.0 - r / 10, maps[r]) for r, i in enumerate(images))
    return UnitView(unit, layer, unit, threshold, exemplars)


def test_random_units_lay_their_own_layers_masks_on_other_images_of_the_layer() -> None:
    units = [_unit(u, "a", 5.0 * u, range(10 * u, 10 * u + 5)) for u in range(4)] + [_unit(9, "b", 0.0, range(90, 93))]
    made = null_units(units, per_layer=7, seed=1)
    assert [u.layer for u in made] == ["a"] * 7 + ["b"] * 7
    assert all(u.unit_id < 0 and u.threshold == 0.0 for u in made)
    assert all(len(u.exemplars) == 5 for u in made[:7]) and all(len(u.exemplars) == 3 for u in made[7:])
    assert all(e.image_id >= 90 for u in made[7:] for e in u.exemplars)  # never another layer's images
    assert all(e.image_id < 40 for u in made[:7] for e in u.exemplars)
    # each drawn mask keeps the shape and weight it had under its own unit's threshold
    shifted = [(e.map - u.threshold, e.activation - u.threshold, e.image_id) for u in units[:4] for e in u.exemplars]
    moved = 0
    for unit in made[:7]:
        for drawn in unit.exemplars:
            source = [s for s in shifted if np.allclose(s[0], drawn.map, atol=1e-5)]
            assert len(source) == 1 and source[0][1] == drawn.activation
            moved += source[0][2] != drawn.image_id
            assert drawn.path == f"{drawn.image_id}.png"  # the image and its path go together
    assert moved > 20  # masks are laid on other images (35 draws; by chance ~1 in 20 stays)
    drawn_masks = next(m for _, m in ExemplarTable.of(made[:1]).masks(16))
    assert drawn_masks.any()


def test_random_units_lay_masks_only_on_images_a_units_region_reaches() -> None:
    """A unit whose exemplars stay below its threshold has empty masks there: its images are no
    region of the layer's, and the describers never measure them (nor detect faces on them)."""
    below = _unit(1, "a", 5.0, range(10, 15))
    below = UnitView(1, "a", 1, 100.0, below.exemplars)  # activations 5.6-6.0: none reaches 100
    made = null_units([_unit(0, "a", 0.0, range(0, 5)), below], per_layer=20, seed=3)
    assert {e.image_id for u in made for e in u.exemplars} <= set(range(5))


def test_excess_and_p_values_match_a_direct_count() -> None:
    rng = torch.Generator().manual_seed(0)
    null = torch.rand(50, 6, generator=rng)
    values = torch.stack([null.mean(0), null.max(0).values + 0.1, torch.zeros(6), null[3]])
    chance = against_chance(values, ["a"] * 4, torch.cat([null, torch.ones(5, 6)]), ["a"] * 50 + ["b"] * 5)
    expected = (1 + (null[None] >= values[:, None]).sum(1)) / 51  # (4, 6): random units at least as high
    torch.testing.assert_close(chance.significance, expected.float())
    torch.testing.assert_close(chance.mean, null.mean(0).expand(4, 6))
    assert float(chance.significance[1].max()) == pytest.approx(1 / 51)  # above every random unit: the least p
    assert torch.all(chance.excess[2] == MIN_EXCESS) and torch.all(chance.excess[1] > 0.1)


def test_a_layer_without_random_units_has_no_significance() -> None:
    chance = against_chance(torch.ones(2, 3), ["a", "a"], torch.zeros(4, 3), ["b"] * 4)
    assert torch.all(chance.significance == 1.0) and torch.all(chance.excess == 1.0)
