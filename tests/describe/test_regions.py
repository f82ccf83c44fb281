"""How much each exemplar speaks for its unit: regions by margin, whole images by softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from milan_core.describe.base import Exemplar, UnitView
from milan_core.describe.regions import ExemplarTable, exemplar_weights


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
