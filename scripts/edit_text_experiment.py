"""MILAN's text-editing experiment at CPU scale; prints a table of accuracies.

1. Four coarse classes from the shared ImageNet photos (by WordNet: dog, bird, wheeled vehicle,
   structure), at most ``--per-class`` photos each, half for training and half for testing.
2. The class name is rendered onto every photo (Pillow): training photos carry their own class
   name, test photos another class's name (the text disagrees with the label).
3. A linear head is fitted on frozen EfficientNet-Lite0 pooled features of the training photos.
4. Lite0 is dissected on the rendered photos and described with the default describer; units
   whose descriptions match "text" or "letters" (``milan_core.catalog.search``) are switched off, and
   accuracy on the conflicting test photos is compared with switching off as many random units
   of the same layers (``--trials`` seeds).

Usage: python scripts/edit_text_experiment.py --work /tmp/text-edit [--per-class 40]
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from milan_core.applications import concepts  # noqa: E402
from milan_core.applications.audit import matching_units  # noqa: E402
from milan_core.applications.evaluation import AblationEvaluator, load_labelled_probe, split_before  # noqa: E402
from milan_core.applications.importance import as_mapping, unit_order  # noqa: E402
from milan_core.catalog import Catalog  # noqa: E402
from milan_core.config import DissectConfig  # noqa: E402
from milan_core.describe.command import describe_run  # noqa: E402
from milan_core.dissect import dissect  # noqa: E402
from milan_core.images import find_images  # noqa: E402
from milan_core.models import LoadedModel, load_model  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
CLASSES = {"dog": "dog", "bird": "bird", "vehicle": "wheeled_vehicle", "building": "structure"}
LAYERS = ("blocks.5", "blocks.6")
QUERIES = ("text", "letters")


def pick_photos(per_class: int) -> dict[str, list[Path]]:
    """Photos per class name, by the WordNet concept of their ImageNet label (no photo in two classes)."""
    synsets = {name: concepts.concept_synset(concept) for name, concept in CLASSES.items()}
    chosen: dict[str, list[Path]] = {name: [] for name in CLASSES}
    for image in find_images(SAMPLES):
        owners = [name for name, s in synsets.items() if concepts.label_is(str(image.label), s)]
        if len(owners) == 1 and len(chosen[owners[0]]) < per_class:
            chosen[owners[0]].append(SAMPLES / image.path)
    return chosen


def render(photo: Path, word: str, model: LoadedModel, seed: int) -> Image.Image:
    """The model's view of the photo with ``word`` written on it in large black capitals on white."""
    view = model.preprocessing.geometry(Image.open(photo).convert("RGB")).copy()
    draw = ImageDraw.Draw(view)
    font = ImageFont.load_default(size=40)
    left, top, right, bottom = draw.textbbox((0, 0), word.upper(), font=font)
    rng = np.random.default_rng(seed)
    margin = 24  # the view is resized and centre-cropped again on reading; keep the word inside
    x = int(rng.integers(margin, max(margin + 1, view.width - (right - left) - margin)))
    y = int(rng.integers(margin, max(margin + 1, view.height - (bottom - top) - margin)))
    draw.rectangle((x - 4, y - 4, x + right - left + 4, y + bottom - top + 8), fill="white")
    draw.text((x - left, y - top), word.upper(), fill="black", font=font)
    return view


def build_sets(work: Path, photos: dict[str, list[Path]], model: LoadedModel) -> None:
    """work/train/<class>/ (own name written), work/test/<class>/ (next class's name), work/clean/<class>/."""
    names = list(photos)
    for index, (name, paths) in enumerate(photos.items()):
        half = len(paths) // 2
        other = names[(index + 1) % len(names)]
        # Files are numbered, not ImageNet-named, so their label is their class folder.
        for split, subset, word in (("train", paths[:half], name), ("test", paths[half:], other)):
            folder = work / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, path in enumerate(subset):
                render(path, word, model, seed=1000 * index + 2 * i + (split == "test")).save(folder / f"{i:03d}.png")
        clean = work / "clean" / name
        clean.mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(paths[half:]):
            shutil.copy(path, clean / f"{i:03d}{path.suffix}")


def fit_head(model: LoadedModel, train: Path, n_classes: int, epochs: int = 300) -> nn.Module:
    """A linear head on the frozen pooled features (full-batch Adam with weight decay)."""
    probe = load_labelled_probe(train, _with_head(model, nn.Linear(1280, n_classes)))
    prefix, _ = split_before(model.module, ["classifier"])
    features, targets = [], []
    with torch.inference_mode():  # the probe is read a batch at a time, as the ablations read it
        for pixels, positions in probe.batches(64):
            features.append(prefix(pixels))
            targets.append(probe.targets[positions])
    features, targets = torch.cat(features), torch.cat(targets)
    head = nn.Linear(features.shape[1], n_classes)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(head(features.clone()), targets)
        loss.backward()
        optimiser.step()
    return head.eval()


def _with_head(model: LoadedModel, head: nn.Module) -> LoadedModel:
    module = copy.deepcopy(model.module)
    module.classifier = head
    return LoadedModel(f"{model.name}+head", module.eval(), model.preprocessing, model.weights)


def describe_units(work: Path) -> Path:
    """Dissect lite0 on the rendered photos and describe the units; the catalog's path."""
    catalog = work / "catalog.duckdb"
    probe = work / "probe"
    if probe.exists():
        shutil.rmtree(probe)
    for split in ("train", "test"):
        shutil.copytree(work / split, probe / split)
    config = DissectConfig(images=str(probe), layers=LAYERS, k=10, batch_size=16, workers=0, run_id="text-probe")
    dissect(config, catalog)
    describe_run(catalog, "text-probe", None)
    return catalog


def text_units(catalog_path: Path, candidates: bool) -> tuple[list[tuple[str, int]], list[str]]:
    """Units whose descriptions (or, with ``candidates``, losing candidates) match any of QUERIES."""
    found = {}
    with Catalog(catalog_path) as catalog:
        for query in QUERIES:
            matches = matching_units(catalog, query, ["text-probe"], candidates=candidates, required=False)
            found.update({(r.layer, int(r.unit)): r.description for r in matches.itertuples()})
    return list(found), list(found.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a scratch folder (rewritten)")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--candidates", action="store_true", help="also match units by their losing candidates")
    args = parser.parse_args()
    torch.manual_seed(0)
    base = load_model("efficientnet-lite0")
    photos = pick_photos(args.per_class)
    build_sets(args.work, photos, base)
    edited = _with_head(base, fit_head(base, args.work / "train", len(photos)))
    catalog = describe_units(args.work)
    units, descriptions = text_units(catalog, args.candidates)
    with Catalog(catalog) as c:
        all_units = c.layer_units("text-probe", list(LAYERS), None)
    rows = []
    for name in ("train", "test", "clean"):
        probe = load_labelled_probe(args.work / name, edited)
        evaluator = AblationEvaluator(edited, probe, list(LAYERS))
        base_acc = evaluator.accuracy({})
        text_acc = evaluator.accuracy(as_mapping(units)) if units else float("nan")
        random = [evaluator.accuracy(as_mapping(unit_order(all_units, "random", s)[: len(units)]))
                  for s in range(args.trials)] if units else [float("nan")]
        rows.append((name, len(probe.labels), base_acc, text_acc, float(np.mean(random)), float(np.std(random))))
    print(f"classes: {', '.join(f'{k} ({len(v)})' for k, v in photos.items())}; layers {', '.join(LAYERS)} "
          f"({len(all_units)} units)")
    how = "descriptions or losing candidates" if args.candidates else "descriptions"
    print(f"units whose {how} match {' / '.join(QUERIES)}: {len(units)}"
          + ("" if units else " (nothing to switch off: the 'text off' columns are empty)"))
    for (layer, unit), text in zip(units, descriptions):
        print(f"  {layer}:{unit}  {text}")
    random_header = f"random off (mean ± sd, {args.trials} trials)"
    print(f"\n{'images':8s} {'n':>4s} {'unedited':>9s} {'text off':>9s} {random_header:>36s}")
    labels = {"train": "train (text = label)", "test": "test (text ≠ label)", "clean": "test, no text"}
    for name, n, base_acc, text_acc, mean, sd in rows:
        print(f"{labels[name]:22s} {n:4d} {100 * base_acc:8.1f}% {100 * text_acc:8.1f}% "
              f"{100 * mean:10.1f}% ± {100 * sd:.1f}")


if __name__ == "__main__":
    main()
