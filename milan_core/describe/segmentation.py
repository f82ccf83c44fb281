"""Network Dissection's IoU between every unit's thresholded masks and every labelled concept.

One pass of the dissected model over a probe set with class-index masks (COCO-style PNGs: pixel
value = class id). For each batch, each unit's upsampled maps above its stored threshold are
compared with each concept's pixels: intersections and both areas are accumulated per unit x
concept with one matrix product, so IoU = I / (A_unit + A_concept - I) over the whole probe set.
Only evaluation (and a user who passes masks explicitly) reads the labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import functional as TF
from tqdm import tqdm

from milan_core.errors import UserError
from milan_core.hooks import LayerRecorder
from milan_core.models import LoadedModel, Preprocessing

MASK_SIZE = 112  # IoU is measured at this resolution of the model's view
FIRST_STUFF_ID = 92  # COCO panoptic: ids from 92 on are stuff (sky, grass, wall), below are things


@dataclass(frozen=True)
class ConceptIoU:
    """``iou[layer]``: (units, concepts) over the probe set, concepts in ``class_ids`` order."""

    class_ids: tuple[int, ...]
    iou: dict[str, torch.Tensor]


def read_classes(path: Path) -> dict[int, str]:
    """Class ids and names from a YAML ``classes:`` mapping (0 = unlabeled is dropped)."""
    import yaml

    if not path.is_file():
        raise UserError(f"classes file not found: {path}")
    classes = yaml.safe_load(path.read_text()).get("classes")
    if not isinstance(classes, dict):
        raise UserError(f"{path} has no 'classes:' mapping of id: name")
    return {int(k): str(v) for k, v in classes.items() if int(k) != 0}


def concept_word(name: str) -> str:
    """A COCO panoptic name as a word: ``sky-other-merged`` -> ``sky``, ``door-stuff`` -> ``door``."""
    return name.split("-")[0].replace("_", " ")


def mask_view(mask: Image.Image, preprocessing: Preprocessing, size: int = MASK_SIZE) -> torch.Tensor:
    """A class-index mask cut like the model's view (resize + centre crop), nearest, at ``size``."""
    resize = int(round(preprocessing.input_size / preprocessing.crop_pct))
    view = TF.center_crop(TF.resize(mask, resize, interpolation=TF.InterpolationMode.NEAREST),
                          [preprocessing.input_size, preprocessing.input_size])
    return torch.from_numpy(np.asarray(view.resize((size, size), Image.NEAREST), dtype=np.int64))


def accumulate_iou(unit_masks: torch.Tensor, labels: torch.Tensor, class_ids: Sequence[int],
                   totals: dict[str, torch.Tensor]) -> None:
    """Add one batch: ``unit_masks`` (N, U, P) bool, ``labels`` (N, P) class ids."""
    lookup = torch.full((int(labels.max()) + 1 if labels.numel() else 1,), -1, dtype=torch.long)
    known = [c for c in class_ids if c < len(lookup)]
    lookup[known] = torch.tensor([class_ids.index(c) for c in known], dtype=torch.long)
    index = lookup[labels]
    concept = F.one_hot(index.clamp_min(0), len(class_ids)).float() * (index >= 0)[..., None]  # (N, P, K)
    units = unit_masks.float()
    totals["inter"] += torch.einsum("nup,npk->uk", units, concept)
    totals["unit_area"] += units.sum((0, 2))
    totals["concept_area"] += concept.sum((0, 1))


@torch.inference_mode()
def concept_iou(model: LoadedModel, images: Path, masks: Path, class_ids: Sequence[int],
                thresholds: dict[str, torch.Tensor], batch_size: int = 16) -> ConceptIoU:
    """IoU of every unit of ``thresholds``' layers with every concept, over images that have a mask."""
    pairs = [(p, masks / p.relative_to(images).with_suffix(".png"))
             for p in sorted(images.rglob("*")) if p.is_file()]
    pairs = [(i, m) for i, m in pairs if m.is_file()]
    if not pairs:
        raise UserError(f"no image under {images} has a mask (same name, .png) under {masks}")
    class_ids = list(class_ids)
    totals = {
        layer: {"inter": torch.zeros(len(t), len(class_ids)), "unit_area": torch.zeros(len(t)),
                "concept_area": torch.zeros(len(class_ids))}
        for layer, t in thresholds.items()
    }
    with LayerRecorder(model.module, list(thresholds)) as recorder:
        for start in tqdm(range(0, len(pairs), batch_size), desc="iou", unit="batch", leave=False):
            batch = pairs[start : start + batch_size]
            pixels = torch.stack([model.preprocessing(Image.open(i)) for i, _ in batch])
            labels = torch.stack([mask_view(Image.open(m), model.preprocessing) for _, m in batch]).flatten(1)
            model.module(pixels)
            for layer, threshold in thresholds.items():
                maps = recorder.spatial(layer).float()
                up = F.interpolate(maps, size=(MASK_SIZE, MASK_SIZE), mode="bilinear", align_corners=False)
                accumulate_iou((up > threshold[None, :, None, None]).flatten(2), labels, class_ids, totals[layer])
    iou = {
        layer: t["inter"] / (t["unit_area"][:, None] + t["concept_area"][None, :] - t["inter"]).clamp_min(1.0)
        for layer, t in totals.items()
    }
    return ConceptIoU(tuple(class_ids), iou)
