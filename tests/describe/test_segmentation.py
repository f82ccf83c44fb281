"""Network Dissection IoU on hand-made masks with a known answer."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from milan_core.describe.evaluate import names_concept
from milan_core.describe.segmentation import accumulate_iou, concept_word, mask_view
from milan_core.models import Preprocessing


def test_iou_of_hand_made_masks() -> None:
    # two images of 4 pixels; concept 5 at pixels {0,1} of image 0 and {0} of image 1; 9 at {3}.
    labels = torch.tensor([[5, 5, 0, 9], [5, 0, 0, 9]])
    units = torch.tensor([
        [[1, 1, 0, 0], [0, 0, 0, 1]],  # image 0: unit 0 on {0,1}, unit 1 on {3}
        [[1, 1, 0, 0], [0, 0, 0, 0]],  # image 1: unit 0 on {0,1}, unit 1 off
    ], dtype=torch.bool)
    totals = {"inter": torch.zeros(2, 2), "unit_area": torch.zeros(2), "concept_area": torch.zeros(2)}
    accumulate_iou(units, labels, [5, 9], totals)
    iou = totals["inter"] / (totals["unit_area"][:, None] + totals["concept_area"][None] - totals["inter"])
    assert iou[0, 0].item() == pytest.approx(3 / 4)  # I = 2 + 1, U = 4 + 3 - 3
    assert iou[1, 1].item() == pytest.approx(1 / 2)  # I = 1, U = 1 + 2 - 1
    assert iou[0, 1].item() == 0.0


def test_masks_are_cut_like_the_model_view() -> None:
    mask = Image.new("L", (200, 100))
    mask.paste(7, (0, 0, 50, 100))  # left quarter: cropped away by the centre crop
    mask.paste(3, (50, 0, 200, 100))
    view = mask_view(mask, Preprocessing(64, 1.0, (0.5,) * 3, (0.5,) * 3), size=16)
    assert set(view.unique().tolist()) == {3}


def test_concept_names_and_matching() -> None:
    assert concept_word("sky-other-merged") == "sky" and concept_word("door-stuff") == "door"
    assert names_concept("blue sky", "sky")
    assert names_concept("Labrador retriever", "dog")  # a kind of dog names the dog concept
    assert names_concept("canine", "dog")  # so does a hypernym
    assert not names_concept("sports car", "dog")
