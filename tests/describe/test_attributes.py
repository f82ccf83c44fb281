"""Attributes on synthetic images whose colour, orientation, position, borders and highlights are known."""

from __future__ import annotations

import numpy as np
import torch

from milan_core.describe.attributes import (
    BORDERS, COLOURS, CORNERS, ORIENTATIONS, POSITIONS, Attributes, colour_terms, empty_attributes, measure,
    phrase_table, phrases,
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
    table = phrase_table(attributes)
    value = dict(zip(table.texts, table.values[1].tolist()))
    stripes = max(value["white and black horizontal stripes"], value["black and white horizontal stripes"])
    assert stripes > 0.5 and stripes > value["black and white vertical stripes"]
    assert value["horizontal lines"] > value["vertical lines"]
    assert value["checkered patterns and grids"] < 0.1


def _values(units: list[UnitView], views: dict[str, np.ndarray]) -> list[dict[str, float]]:
    table = phrase_table(measure(units, views))
    return [dict(zip(table.texts, row)) for row in table.values.tolist()]


def test_borders_and_corners_of_the_image() -> None:
    right, corner = np.zeros((8, 8)), np.zeros((8, 8))
    right[:, -1] = 1.0  # the right eighth of the image
    corner[-2:, :2] = 1.0  # the bottom-left corner
    views = {"grey.png": np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)}
    at_right, at_corner = _values([_unit(0, "grey.png", right), _unit(1, "grey.png", corner)], views)
    assert at_right["the right edge of the image"] > 0.9 > 0.1 > at_right["the left edge of the image"]
    assert at_corner["the bottom-left corner of the image"] > 0.9 and at_corner["the bottom corners of the image"] > 0.9
    assert at_corner["the top corners of the image"] == 0.0 and at_right["the bottom-left corner of the image"] < 0.2


def test_highlights_checks_and_boundaries() -> None:
    dark = np.full((SIZE, SIZE, 3), 40, dtype=np.uint8)
    dark[50:54, 50:54] = 250  # one small specular-like spot
    checks = ((np.arange(SIZE)[:, None] // 8 + np.arange(SIZE)[None, :] // 8) % 2 * 255).astype(np.uint8)
    checks = np.repeat(checks[..., None], 3, axis=2)
    spot = np.zeros((8, 8))
    spot[3:5, 3:5] = 1.0
    views = {"spot.png": dark, "checks.png": checks, "h.png": _stripes(True)}
    units = [_unit(0, "spot.png", spot), _unit(1, "checks.png", np.ones((8, 8))), _unit(2, "h.png", np.ones((8, 8)))]
    at_spot, at_checks, at_stripes = _values(units, views)
    assert at_spot["bright highlights on surfaces"] > 0.1 and at_checks["bright highlights on surfaces"] < 0.01
    assert at_spot["small bright spots"] > 0.2 > at_checks["small bright spots"]
    assert at_spot["dark areas"] > 0.5 > at_spot["bright patches"]
    assert at_checks["checkered patterns and grids"] > 0.5 > at_stripes["checkered patterns and grids"]
    assert at_checks["sharp light and dark boundaries"] > at_spot["sharp light and dark boundaries"]


def test_empty_masks_give_no_attribute_evidence() -> None:
    views = {"red_blue.png": _red_over_blue()}
    attributes = measure([_unit(0, "red_blue.png", np.zeros((4, 4)))], views)
    assert float(attributes.colours.sum()) == 0.0 and float(attributes.area[0]) == 0.0
    table = phrase_table(attributes)
    assert float(table.values.max()) < 0.01


def test_the_phrase_table_is_the_known_vocabulary() -> None:
    """``phrases`` lists what ``phrase_table`` can say, so the vector cache can learn it all at once."""
    rng = torch.Generator().manual_seed(0)
    n = 40
    widths = {"colours": len(COLOURS), "orientations": len(ORIENTATIONS), "positions": len(POSITIONS),
              "borders": len(BORDERS), "corners": len(CORNERS), "lightness": 4}
    attributes = Attributes(**{name: torch.rand(n, widths[name], generator=rng).softmax(1) if name in widths
                               else torch.rand(n, generator=rng) * 0.5 for name in Attributes.__dataclass_fields__})
    table = phrase_table(attributes)
    assert table.texts == phrases() and len(set(table.texts)) == len(table.texts) > 400
    assert table.values.shape == (n, len(table.texts)) and 0.0 <= float(table.values.min()) <= float(table.values.max()) <= 1.0
    assert phrase_table(empty_attributes(3)).values.abs().sum() == 0
