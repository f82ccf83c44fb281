"""How much each exemplar speaks for its unit: regions by margin, whole images by softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from milan_core.describe.base import Exemplar, UnitView
from milan_core.describe.regions import ExemplarTable, exemplar_weights
from milan_core.exemplars import mask


def _unit(unit_id: int, threshold: float, activations: list[float], size: int) -> UnitView:
    amap = np.ones((size, size), dtype=np.float32)
    exemplars = tuple(Exemplar(r, r, f"{r}.jpg", a, amap * a) for r, a in enumerate(activations))
    return UnitView(unit_id, "layer", unit_id, threshold, exemplars)


def test_whole_image_units_weigh_exemplars_by_softmax_regions_by_margin() -> None:
    logit = _unit(0, 2.0, [9.0, 7.0, 6.0, 1.0], size=1)  # a logit unit: the top photo should dominate
    region = _unit(1, 2.0, [9.0, 7.0, 6.0, 1.0], size=4)
    table = ExemplarTable.of([logit, region])
    weights = exemplar_weights(table, 2)
    assert table.whole.tolist() == [True] * 4 + [False] * 4
    softmax = torch.tensor([9.0, 7.0, 6.0]).softmax(0)
    assert weights[:3] == pytest.approx(softmax.tolist(), rel=1e-5) and weights[3] == 0.0  # below threshold
    assert weights[4:] == pytest.approx([7 / 16, 5 / 16, 4 / 16, 0.0], rel=1e-4)  # activation above threshold
    assert weights[0] > 0.8 > weights[4]


def test_a_unit_that_never_reaches_its_threshold_weighs_nothing() -> None:
    table = ExemplarTable.of([_unit(0, 5.0, [1.0, 0.5], size=1), _unit(1, 5.0, [1.0, 0.5], size=3)])
    assert exemplar_weights(table, 2).tolist() == [0.0] * 4


def test_pooled_masks_are_the_share_of_each_cell_above_the_threshold() -> None:
    """A 1x1 exemplar covers every cell; a spatial one, what its full-size mask covers of each cell."""
    rng = np.random.default_rng(0)
    amap = rng.random((7, 7), dtype=np.float32)
    spatial = UnitView(1, "hidden", 1, 0.5, (Exemplar(0, 0, "a.jpg", 1.0, amap),))
    logit = UnitView(0, "logits", 0, 0.0, (Exemplar(0, 0, "a.jpg", 3.0, np.ones((1, 1), np.float32)),))
    table = ExemplarTable.of([logit, spatial])
    (_, pooled), = table.masks(224, pooled=7)
    assert pooled.shape == (2, 7, 7) and torch.equal(pooled[0], torch.ones(7, 7))
    upsampled = F.interpolate(torch.from_numpy(amap)[None, None], size=(224, 224), mode="bilinear",
                              align_corners=False)[0, 0]
    full = (upsampled > 0.5).float()  # torch's bilinear resize above the threshold: the batched rule
    decided = (upsampled - 0.5).abs().numpy() > 1e-5  # exemplars.mask (numpy) draws it, up to float ties
    assert (mask(amap, 0.5, 224) == full.bool().numpy())[decided].all()
    exact = full.reshape(7, 32, 7, 32).mean((1, 3))  # the shares of the full-size mask
    assert float((pooled[1] - exact).abs().max()) < 0.1 and float((pooled[1] - exact).abs().mean()) < 0.02
    assert 0.0 < float(pooled[1].mean()) < 1.0
    (_, masks), = table.masks(224)
    assert masks.dtype == torch.bool and bool(masks[0].all()) and torch.equal(masks[1], full.bool())


def test_exemplars_below_the_threshold_are_left_out_without_changing_any_weight() -> None:
    units = [_unit(0, 2.0, [9.0, 7.0, 1.0], size=1), _unit(1, 5.0, [9.0, 4.0, 3.0], size=4),
             _unit(2, 9.5, [9.0], size=3)]
    table = ExemplarTable.of(units)
    reaching = table.reaching()
    assert reaching.unit_index.tolist() == [0, 0, 1] and reaching.activations.tolist() == [9.0, 7.0, 9.0]
    assert reaching.paths == ["0.jpg", "1.jpg", "0.jpg"] and reaching.whole.tolist() == [True, True, False]
    full, kept = exemplar_weights(table, 3), exemplar_weights(reaching, 3)
    assert torch.equal(full[full > 0], kept) and float(full.sum()) == pytest.approx(2.0)
