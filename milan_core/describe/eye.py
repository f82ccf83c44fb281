"""The eye: a reference ImageNet classifier that says what objects each exemplar region shows.

It runs once per distinct exemplar image and keeps its spatial features (timm EfficientNet:
``forward_features``, (N, 1280, g, g) after conv_head/bn2). Since its classifier is linear after
average pooling, classifying the features averaged under a region is what the eye would say of that
region (a class-activation map pooled under the mask), so the cost grows with images, not with
units x k. The eye sees the *dissected* model's view of each image (its resize and centre crop),
so its grid lines up with the exemplar masks, at the view's own size (``eye_size``). It runs on
ONNX Runtime (``eye_forward``), else on PyTorch in bfloat16 where the CPU computes it natively.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from milan_core.describe.base import UnitView
from milan_core.describe.regions import ExemplarTable, exemplar_weights
from milan_core.errors import UserError
from milan_core.models import LoadedModel, load_model
from milan_core.runtime import layer_forward

DEFAULT_EYE = "efficientnet-lite2"
FALLBACK_EYE = "efficientnet-lite1"
MIN_EYE_SIZE = 224  # ImageNet's usual resolution: an ImageNet classifier sees little in less
EYE_FEATURES = "bn2"  # timm EfficientNet's last module of forward_features (after conv_head)


def choose_eye(dissected_model: str) -> str:
    """Lite2, unless that is the model being dissected (then Lite1): the eye must be independent."""
    return FALLBACK_EYE if dissected_model == DEFAULT_EYE else DEFAULT_EYE


def load_eye(name: str) -> LoadedModel:
    """The eye model; a clear error when it cannot be loaded or has no spatial features."""
    try:
        eye = load_model(name)
    except UserError as error:
        raise UserError(f"cannot load the eye model {name!r}: {error}") from error
    classifier = getattr(eye.module, "classifier", None)
    if not isinstance(getattr(eye.module, EYE_FEATURES, None), nn.Module) or not isinstance(classifier, nn.Linear):
        raise UserError(f"the eye {name!r} needs feature maps at {EYE_FEATURES!r} and a linear classifier "
                        "(a timm EfficientNet)")
    return eye


@dataclass(frozen=True)
class EyeFeatures:
    """The eye's features at every cell of every exemplar image: rows ``index[path] * g² + cell``."""

    index: dict[str, int]
    cells: torch.Tensor  # (N * g * g, C) float32
    grid: int
    classifier: nn.Linear


def eye_size(view_size: int, eye_input_size: int) -> int:
    """The side at which the eye sees a view: the view's own, within [MIN_EYE_SIZE, the eye's input].

    Upscaling a view adds no detail but costs the square of the scale in compute: Lite2 seeing
    lite0's 224-pixel views as they are took 19% less time than at its 260 pixels, and its
    classes named the final-layer units better (top-1 0.831 vs 0.816 with the same selection).
    A tiny view (a CIFAR model's) is still upscaled to ``MIN_EYE_SIZE``; a large one is shrunk.
    """
    return min(max(view_size, MIN_EYE_SIZE), eye_input_size)


def eye_precision() -> AbstractContextManager:
    """bfloat16 autocast where oneDNN runs it natively (AVX512-BF16 or AMX), else float32: for the
    eye on PyTorch, when its ONNX export fails.

    The eye only has to name the objects a region shows, not reproduce exact logits: in bfloat16
    Lite2 took 10.5 ms an image here instead of 23.6 ms. On a CPU without native bfloat16 it
    would be emulated and slower, so it stays float32 there.
    """
    try:  # a private probe of oneDNN's: a torch without it is treated as a CPU without bfloat16
        native = torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return torch.autocast("cpu", dtype=torch.bfloat16) if native else nullcontext()


@contextmanager
def eye_forward(eye: LoadedModel, size: int) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """(N, 3, size, size) pixels -> the eye's (N, C, g, g) feature maps: ONNX Runtime in float32,
    else PyTorch (in bfloat16 where native).

    ONNX Runtime folds each BatchNorm into its convolution and fuses the activations: over 16
    views of 224 pixels, Lite2 took 0.35-0.48 s on one thread against 0.43-0.47 s in PyTorch
    bfloat16 on one thread and 1.4-2.9 s in float32 on two (one busy machine), and it computes what
    float32 PyTorch does (its first batch is checked against it, ``runtime.PARITY_TOLERANCE``).
    The graph is exported once per eye and size and cached; an eye that does not export runs on
    PyTorch with one line saying why.
    """
    with layer_forward(eye, [EYE_FEATURES], size=size) as forward:
        precision = eye_precision() if forward.backend == "torch" else nullcontext()
        with precision:
            yield lambda pixels: forward(pixels)[EYE_FEATURES].float()


@torch.inference_mode()
def see(eye: LoadedModel, views: Sequence[Image.Image], paths: Sequence[str], batch_size: int = 16) -> EyeFeatures:
    """Run the eye once over each image's view (the dissected model's), keeping its feature maps."""
    size = eye_size(views[0].width, eye.preprocessing.input_size) if views else eye.preprocessing.input_size
    chunks = []
    with eye_forward(eye, size) as features_of:
        for start in tqdm(range(0, len(views), batch_size), desc="eye", unit="batch", leave=False):
            batch = [v if v.size == (size, size) else v.resize((size, size), Image.BICUBIC)
                     for v in views[start : start + batch_size]]
            chunks.append(features_of(eye.preprocessing.to_batch(batch)))
    features = torch.cat(chunks)  # (N, C, g, g)
    cells = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]).contiguous()
    return EyeFeatures({p: i for i, p in enumerate(paths)}, cells, features.shape[-1], eye.module.classifier)


@torch.inference_mode()
def region_class_probabilities(units: Sequence[UnitView], seen: EyeFeatures, mask_size: int) -> torch.Tensor:
    """(U, 1000): for each unit, the eye's class probabilities averaged over its exemplar regions.

    An exemplar whose mask is empty contributes nothing; a unit whose masks are all empty gets a
    row of zeros (no object evidence).
    """
    table = ExemplarTable.of(units).reaching()
    weights = exemplar_weights(table, len(units))
    image_index = torch.tensor([seen.index[p] for p in table.paths], dtype=torch.long)
    n_classes = seen.classifier.out_features
    probs = torch.zeros(len(units), n_classes)
    cells_per_image = seen.grid * seen.grid
    for part, cover in table.masks(mask_size, pooled=seen.grid):
        cover = cover.flatten(1)  # (m, g*g): each exemplar's share of every cell of its image
        area = cover.sum(1)
        # pooled features = a sparse (m, N*g*g) matrix of cell shares times the (N*g*g, C) cells
        rows = torch.arange(len(cover)).repeat_interleave(cells_per_image)
        columns = (image_index[part, None] * cells_per_image + torch.arange(cells_per_image)).flatten()
        shares = torch.sparse_coo_tensor(torch.stack([rows, columns]), cover.flatten(), (len(cover), len(seen.cells)),
                                         check_invariants=False)  # built in range above
        pooled = torch.sparse.mm(shares, seen.cells) / area.clamp_min(1e-6)[:, None]
        exemplar_probs = seen.classifier(pooled).softmax(-1) * (area > 0)[:, None]
        probs.index_add_(0, table.unit_index[part], exemplar_probs * weights[part, None])
    return probs
