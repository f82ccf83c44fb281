"""Attributes on synthetic images whose colour, orientation and position are known."""

from __future__ import annotations

import numpy as np
import torch

from milan_core.describe.attributes import (
    COLOURS,
    ORIENTATIONS,
    POSITIONS,
    Attributes,
    colour_terms,
    compose,
    measure,
    phrases,
)
from milan_core.describe.base import Exemplar, UnitView

SIZE = 112


def _stripes(horizontal: bool) -> np.ndarray:
    stripes = ((np.arange(SIZE) // 8) % 2 * 255).astype(np.uint8)
    grid = np.repeat(stripes[:, None] if horizontal else stripes[None, :], SIZE, axis=1 if horizontal else 0)
    return np.repeat(grid[..., None], 3, axis=2)


def _red_over_blue() -> np.ndarray:
    image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    image[: SIZE // 2] = (220, 30, 30)
    image[SIZE // 2 :] = (30, 60, 220)
    return image


def _unit(unit: int, path: str, amap: np.ndarray) -> UnitView:
    return UnitView(unit, "blocks.1", unit, 0.5, (Exemplar(0, unit, path, 1.0, amap.astype(np.float32)),))


def test_colour_terms_of_plain_colours() -> None:
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [128, 128, 128], [230, 20, 20], [20, 200, 20],
                        [20, 40, 230], [240, 230, 30], [120, 70, 20]]], dtype=np.uint8)
    import torch

    terms = [COLOURS[i] for i in colour_terms(torch.from_numpy(pixels))[0].tolist()]
    assert terms == ["black", "white", "grey", "red", "green", "blue", "yellow", "brown"]


def test_masked_colour_position_and_orientation() -> None:
    top = np.zeros((4, 4))
    top[:1] = 1.0  # the top quarter
    everywhere = np.ones((4, 4))
    views = {"red_blue.png": _red_over_blue(), "h.png": _stripes(True), "v.png": _stripes(False)}
    units = [_unit(0, "red_blue.png", top), _unit(1, "h.png", everywhere), _unit(2, "v.png", everywhere)]
    attributes = measure(units, views)
    assert COLOURS[int(attributes.colours[0].argmax())] == "red"
    assert POSITIONS[int(attributes.positions[0].argmax())] == "top"
    assert ORIENTATIONS[int(attributes.orientations[1].argmax())] == "horizontal"
    assert ORIENTATIONS[int(attributes.orientations[2].argmax())] == "vertical"
    assert float(attributes.edges[1]) > 0.5 > float(attributes.edges[0])
    texts = {c.text: c for c in compose(attributes, 1)}
    assert "white and black horizontal stripes" in texts or "black and white horizontal stripes" in texts
    assert texts["horizontal lines"].log_p_given_e > texts["vertical lines"].log_p_given_e


def test_empty_masks_give_no_attribute_evidence() -> None:
    views = {"red_blue.png": _red_over_blue()}
    attributes = measure([_unit(0, "red_blue.png", np.zeros((4, 4)))], views)
    assert float(attributes.colours.sum()) == 0.0 and float(attributes.area[0]) == 0.0
    assert all(c.log_p_given_e < np.log(0.01) for c in compose(attributes, 0))


def test_every_composed_phrase_is_in_the_known_vocabulary() -> None:
    """``phrases`` lists what ``compose`` can say, so the vector cache can learn it all at once."""
    rng = torch.Generator().manual_seed(0)
    n = 400
    attributes = Attributes(
        colours=torch.rand(n, len(COLOURS), generator=rng).softmax(1),
        orientations=torch.rand(n, len(ORIENTATIONS), generator=rng).softmax(1),
        edges=torch.rand(n, generator=rng), positions=torch.rand(n, len(POSITIONS), generator=rng).softmax(1),
        area=torch.rand(n, generator=rng) * 0.5,
    )
    composed = {c.text for unit in range(n) for c in compose(attributes, unit)}
    known = set(phrases())
    assert composed <= known and len(composed) > 100
    assert len(known) == len(phrases())  # no phrase twice
