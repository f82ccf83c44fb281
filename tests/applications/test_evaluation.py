"""Accuracy under ablation: the cached prefix changes nothing, labels map to the right classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from milan_core.applications.evaluation import (
    AblationEvaluator,
    LabelledProbe,
    class_indices,
    imagenet_wnids,
    load_labelled_probe,
    split_before,
)
from milan_core.errors import UserError
from milan_core.hooks import ablated
from milan_core.models import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, Preprocessing


def full_model_correct(lite0: LoadedModel, pixels: torch.Tensor, targets: torch.Tensor, units: dict) -> torch.Tensor:
    with ablated(lite0.module, units), torch.inference_mode():
        return lite0.module(pixels).argmax(-1) == targets


def test_imagenet_labels_map_to_class_indices_in_file_order(
    lite0: LoadedModel, cat_labelled: LabelledProbe, cat_pixels: torch.Tensor
) -> None:
    probe = cat_labelled
    assert probe.targets.tolist()[:9] == [285] * 8 + [665]  # n02124075 Egyptian cat, n03785016 moped
    assert imagenet_wnids()[0] == "n01440764"
    with torch.inference_mode():
        accuracy = (lite0.module(cat_pixels).argmax(-1) == probe.targets).float().mean()
    assert accuracy >= 0.5  # a trained ImageNet model on ImageNet photos: labels line up


@pytest.mark.parametrize("layer", ["blocks.6", "classifier"])
def test_the_cached_prefix_gives_the_full_models_answers(
    lite0: LoadedModel, cat_labelled: LabelledProbe, cat_pixels: torch.Tensor, layer: str
) -> None:
    probe = cat_labelled
    evaluator = AblationEvaluator(lite0, probe, [layer])
    assert evaluator.suffix is not lite0.module  # the split was accepted, so it is what is tested
    units = {layer: list(range(0, 160))}
    assert evaluator.correct(units).tolist() == full_model_correct(lite0, cat_pixels, probe.targets, units).tolist()
    assert evaluator.correct({}).tolist() == full_model_correct(lite0, cat_pixels, probe.targets, {}).tolist()


def test_a_model_whose_children_do_not_run_in_order_runs_whole(
    cat_labelled: LabelledProbe, cat_pixels: torch.Tensor
) -> None:
    class Flattening(torch.nn.Module):  # forward flattens between children, as torchvision's ResNet does
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=4)
            self.pool = torch.nn.AdaptiveAvgPool2d(2)
            self.fc = torch.nn.Linear(4 * 2 * 2, 1000)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.pool(self.conv(x)).flatten(1))

    torch.manual_seed(0)
    model = Flattening().eval()
    assert split_before(model, ["fc"]) is not None  # a split exists but is wrong ...
    loaded = LoadedModel("flattening", model, Preprocessing(224, 0.875, IMAGENET_MEAN, IMAGENET_STD), "random")
    evaluator = AblationEvaluator(loaded, cat_labelled, ["fc"])
    assert evaluator.suffix is model  # ... so the evaluator keeps the whole model
    units = {"fc": list(range(500))}
    with ablated(model, units), torch.inference_mode():
        expected = model(cat_pixels).argmax(-1) == cat_labelled.targets
    assert evaluator.correct(units).tolist() == expected.tolist()


def test_folder_labels_use_sorted_order_and_must_cover_the_outputs() -> None:
    assert class_indices(["cat", "dog", "cat"], 2) == [0, 1, 0]
    with pytest.raises(UserError, match="3 outputs"):
        class_indices(["cat", "dog"], 3)


def test_a_probe_set_without_labels_is_refused(lite0: LoadedModel, unlabelled_probe: Path) -> None:
    with pytest.raises(UserError, match="no label"):
        load_labelled_probe(unlabelled_probe, lite0)
