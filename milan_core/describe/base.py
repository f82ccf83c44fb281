"""The describer interface and MILAN's one selection rule, shared by every describer.

A describer looks at a unit (its exemplars: activation maps, threshold, activations, and the probe
images they come from) and proposes candidate descriptions ``d``, each with ``log p(d | E)`` and the
evidence behind it. The choice among candidates is never the describer's: every describer goes
through ``select``, which scores ``log p(d | E) - λ log p(d)`` (MILAN, λ = 0.2). The prior ``p(d)``
is what makes a description specific: "dog" is true of hundreds of units, "spotted dog faces" is
not. A describer that has a language model supplies ``log_prior``; otherwise ``evidence_prior``
estimates ``p(d)`` as how common the candidate is across the units of the same layer
(``layer_priors``): a description many units of a layer share says nothing about any one of them.
``spread_layer_shares`` then keeps any one description from holding more than ``MAX_LAYER_SHARE``
of a layer, unless the units it would move have no other description better than chance.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from milan_core.config import EVIDENCE_TYPES
from milan_core.images import as_rgb
from milan_core.models import Preprocessing

DEFAULT_LAMBDA = 0.2
#: How sharply ``agree`` reads the PMI scores as a distribution over a unit's descriptions
#: (softmax of score / T). Chosen on our own 105 annotated units (0.1 to 0.5 tried; 0.3 best),
#: never on ``../shared``'s 60.
AGREEMENT_TEMPERATURE = 0.3
MAX_LAYER_SHARE = 0.15  # no description on more of a layer's units, unless they truly are alike
SIGNIFICANT = 0.05  # a candidate this unlikely by chance (or less) is evidence of its own

# The evidence types (``config.EVIDENCE_TYPES``; the app filters on them): what kind of evidence won.
# object: a thing (eye classes, WordNet synsets, segmentation "thing" classes); part: a part of
# one, or text (faces, eyes, heads, muzzles: detectors and the eye's geometry); scene: stuff and
# places (sky, grass, road, wall); colour: colour terms inside the masks;
# texture: orientation and pattern (stripes, dots, grids, edges); position: where in the image the
# masks lie (top or bottom boundaries); shape: size and form of the masks (small spots, thin
# lines, outlines); none: no clear evidence, an honest low-confidence label.

#: The label of a unit with no clear evidence.
NO_EVIDENCE_TEXT = "unclear"


@dataclass(frozen=True)
class Exemplar:
    """One of a unit's top images: its activation map (feature-map size) and where the image is.

    ``path`` is relative to the run's probe root. The map is aligned with the *dissected* model's
    view of the image (``RunView.view``), and ``mask(size)`` is where it exceeds the unit's threshold.
    """

    rank: int
    image_id: int
    path: str
    activation: float
    map: np.ndarray  # (H, W) float32


@dataclass(frozen=True)
class UnitView:
    """What a describer sees of a unit."""

    unit_id: int
    layer: str
    unit: int
    threshold: float
    exemplars: tuple[Exemplar, ...]

    @property
    def key(self) -> str:
        return f"{self.layer}:{self.unit}"

    @property
    def spatial(self) -> bool:
        """False for 1x1 maps (logits, pooled features): these units are described by whole images."""
        return bool(self.exemplars) and self.exemplars[0].map.size > 1


@dataclass(frozen=True)
class RunView:
    """What a describer sees of a run: its model's name, probe root, view geometry and units."""

    run_id: str
    model: str
    probe_root: Path
    preprocessing: Preprocessing  # the dissected model's: ``view`` aligns images with the maps
    units: tuple[UnitView, ...]
    weights: str | None = None  # the dissected model's weights file, if it was given one

    def view(self, path: str) -> Image.Image:
        """The dissected model's view (resize + centre crop) of a probe image, as RGB."""
        with Image.open(self.probe_root / path) as image:
            return self.preprocessing.geometry(as_rgb(image))

    def image_paths(self) -> list[str]:
        """Every distinct exemplar image of the run, in a stable order."""
        return sorted({e.path for unit in self.units for e in unit.exemplars})

    def views(self) -> dict[str, Image.Image]:
        """The view of every distinct exemplar image, decoded by a pool of threads.

        Pillow releases the GIL while it decodes and resizes, so the cores share the JPEGs
        (1000 ImageNet views: 2.5 s instead of 4.6 s one by one, on 2 cores here).
        """
        paths = self.image_paths()
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            return dict(zip(paths, pool.map(self.view, paths)))


@dataclass(frozen=True)
class Candidate:
    """A proposed description with its likelihood under the unit's evidence."""

    text: str
    log_p_given_e: float
    evidence_type: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    significance: float | None = None  # p-value: this much evidence from random regions of the layer

    def __post_init__(self) -> None:
        if self.evidence_type not in EVIDENCE_TYPES:
            raise ValueError(f"evidence type {self.evidence_type!r} is not one of {EVIDENCE_TYPES}")


@dataclass(frozen=True)
class Scored:
    """A candidate with its prior, its PMI score and, once ``agree`` ranked it, its agreement:
    the similarity a description of the unit drawn by score would be expected to have with it."""

    candidate: Candidate
    log_p: float
    score: float
    agreement: float | None = None

    @property
    def preference(self) -> float:
        """What ranks it: its agreement where ``agree`` measured one, else its score."""
        return self.score if self.agreement is None else self.agreement


@dataclass(frozen=True)
class UnitDescription:
    """The winner for one unit, every candidate ranked best first, and a 0..1 confidence."""

    unit_id: int
    ranked: tuple[Scored, ...]

    @property
    def chosen(self) -> Scored:
        return self.ranked[0]

    @property
    def confidence(self) -> float:
        """p(d | E) of the winner: low when the evidence is weak, whatever the prior did; halved
        when the evidence says it is weak (a part found by geometry rather than a detector)."""
        weak = 0.5 if self.chosen.candidate.evidence.get("weak") else 1.0
        return float(min(1.0, math.exp(self.chosen.candidate.log_p_given_e))) * weak

    @property
    def significance(self) -> float | None:
        """How likely the winner's evidence is by chance (None: not measured)."""
        return self.chosen.candidate.significance

    def choosing(self, rank: int) -> UnitDescription:
        """The same candidates with the one at ``rank`` chosen (moved first), the others in order."""
        ranked = list(self.ranked)
        return UnitDescription(self.unit_id, (ranked.pop(rank), *ranked))


@runtime_checkable
class Describer(Protocol):
    """Proposes candidates for every unit of a run; ``select`` chooses among them.

    A describer whose texts come from a fixed vocabulary may also have ``known_texts() -> list[str]``:
    their search vectors are then made together, once, and cached between runs. One whose texts
    entail others ("dog faces" entails "dog") may have ``entailments() -> dict[str, frozenset[str]]``
    (each text's entailed texts), which ``prefer_specific`` reads.
    """

    name: str

    def propose(self, run: RunView) -> list[list[Candidate]]:
        """Candidates for each unit of ``run.units``, in the same order (at least one per unit)."""
        ...

    def log_prior(self, proposals: Sequence[Sequence[Candidate]]) -> dict[str, float]:
        """``log p(d)`` for every candidate text (``evidence_prior`` when there is no language model)."""
        ...


def pmi_score(log_p_given_e: float, log_p: float, lam: float = DEFAULT_LAMBDA) -> float:
    """MILAN's objective: ``log p(d | E) - λ log p(d)``."""
    return log_p_given_e - lam * log_p


def evidence_prior(proposals: Sequence[Sequence[Candidate]], floor: float = 1.0) -> dict[str, float]:
    """``log p(d)`` as the mean of ``p(d | E_u)`` over the units u given, never below ``floor`` units.

    A unit that did not propose ``d`` contributes 0. The floor says that the prior cannot tell
    apart descriptions rarer than one unit's worth of evidence: without it a breed seen faintly in
    one unit would get an unbounded bonus over "dog", which the unit's evidence supports better.
    """
    totals: dict[str, float] = {}
    for candidates in proposals:
        for candidate in candidates:
            totals[candidate.text] = totals.get(candidate.text, 0.0) + math.exp(candidate.log_p_given_e)
    n_units = max(1, len(proposals))
    return {text: math.log(max(mass, floor) / max(n_units, floor)) for text, mass in totals.items()}


def layer_priors(
    log_prior: Callable[[Sequence[Sequence[Candidate]]], Mapping[str, float]],
    proposals: Sequence[Sequence[Candidate]], layers: Sequence[str],
) -> list[Mapping[str, float]]:
    """Each unit's ``log p(d)``, estimated by the describer from the proposals of its own layer.

    A layer's units share a resolution and a depth: a description true of most units of one
    layer (regions as large as a coarse layer's, the photos a deep layer picks) may be true of
    few units of another, so its prior is the layer's, not the run's.
    """
    by_layer: dict[str, list[int]] = {}
    for i, layer in enumerate(layers):
        by_layer.setdefault(layer, []).append(i)
    priors: list[Mapping[str, float]] = [{}] * len(proposals)
    for rows in by_layer.values():
        prior = log_prior([proposals[i] for i in rows])
        for i in rows:
            priors[i] = prior
    return priors


def select(
    unit_ids: Sequence[int],
    proposals: Sequence[Sequence[Candidate]],
    log_prior: Mapping[str, float] | Sequence[Mapping[str, float]],
    lam: float = DEFAULT_LAMBDA,
    kind_prior: Mapping[str, float] | None = None,
) -> list[UnitDescription]:
    """The one selection rule: rank each unit's candidates by PMI, best first.

    ``kind_prior`` (a describer's ``kind_prior``, default none) adds ``log`` of how readily people
    describe a region by each kind of evidence (``EVIDENCE_TYPES``) to the score: a describer whose
    evidence is not a human's captions says how people choose among kinds, as MILAN's captioner
    learns it from its annotations.
    A candidate whose evidence random regions of the layer reach too often (significance above
    ``SIGNIFICANT``) ranks after every candidate that is better than chance, whatever its PMI: a
    label no better than chance is no label (``unclear``, whose significance is not measured, wins
    when nothing else is better than chance). ``log_prior`` is one mapping for every unit, or one
    per unit (``layer_priors``). Duplicate texts within a unit keep their most likely version;
    ties keep proposal order.
    """
    if len(unit_ids) != len(proposals):
        raise ValueError(f"{len(proposals)} proposals for {len(unit_ids)} units")
    priors = [log_prior] * len(proposals) if isinstance(log_prior, Mapping) else list(log_prior)
    kinds = kind_prior or {}
    described = []
    for unit_id, candidates, prior in zip(unit_ids, proposals, priors):
        if not candidates:
            raise ValueError(f"the describer proposed nothing for unit {unit_id}")
        best: dict[str, Candidate] = {}
        for candidate in candidates:
            if candidate.text not in best or candidate.log_p_given_e > best[candidate.text].log_p_given_e:
                best[candidate.text] = candidate
        scored = [Scored(c, prior[c.text],
                         pmi_score(c.log_p_given_e, prior[c.text], lam) + kinds.get(c.evidence_type, 0.0))
                  for c in best.values()]
        described.append(UnitDescription(unit_id, tuple(sorted(scored, key=lambda s: (chance_level(s), -s.score)))))
    return described


def agree(described: Sequence[UnitDescription], vectors: Mapping[str, Sequence[float]],
          temperature: float = AGREEMENT_TEMPERATURE) -> list[UnitDescription]:
    """Each unit's candidates better than chance ranked by agreement, the description closest
    in meaning (``vectors``: unit-length sentence vectors by text) to all of them, weighted by
    how likely PMI makes each: softmax(score / ``temperature``). Chance-level candidates follow.

    PMI's argmax is the best guess when one description stands out; when several of a unit's
    candidates score alike ("dog", "dog faces", "heads of dogs", "animal faces"), it picks one
    of them by a small margin, and a wrong one costs all the meaning it does not share with the
    right one. The description that agrees most with the likely ones (minimum Bayes risk under
    sentence similarity) is the one expected to be closest to what a person would write; with a
    clear winner it is the winner. On our own 105 annotated units (Lite0/1/2) this took the
    mean similarity from 0.421 to 0.431 (replayed on the stored candidates).
    """
    agreed = []
    for description in described:
        ranked = list(description.ranked)
        likely, rest = [s for s in ranked if not chance_level(s)], [s for s in ranked if chance_level(s)]
        if not likely:  # nothing better than chance: agreement among them all
            likely, rest = rest, []
        scores = np.array([s.score for s in likely])
        weights = np.exp((scores - scores.max()) / temperature)
        matrix = np.array([vectors[s.candidate.text] for s in likely], dtype=np.float64)
        agreement = matrix @ (matrix.T @ (weights / weights.sum()))
        order = np.argsort(-agreement, kind="stable")
        best = [replace(likely[i], agreement=float(agreement[i])) for i in order]
        agreed.append(UnitDescription(description.unit_id, (*best, *rest)))
    return agreed


def prefer_specific(described: Sequence[UnitDescription],
                    entailed: Mapping[str, frozenset[str]]) -> list[UnitDescription]:
    """MILAN's specificity where the describer knows which descriptions entail which: a unit whose
    winner is entailed by another of its candidates better than chance ("dog faces" entails "dog")
    takes the best ranked of those instead. Both are true of the unit by their own evidence, and
    the one that entails the other says more; ``agree`` alone tends to the general one, which is
    close in meaning to all of its parts ("dog" to "dog faces", "heads of dogs", "canine").

    On our four annotated sets (Lite0 60 + 25, Lite1 40, Lite2 40) it moves 2 of the 165 units,
    "dog" to "dog faces", by +0.28 and +0.14 (README).
    """
    preferred = []
    for description in described:
        winner = description.chosen
        rank = None if chance_level(winner) else next(
            (r for r, s in enumerate(description.ranked[1:], start=1)
             if not chance_level(s) and winner.candidate.text in entailed.get(s.candidate.text, ())), None)
        preferred.append(description if rank is None else description.choosing(rank))
    return preferred


def chance_level(scored: Scored) -> bool:
    """True when random regions of the layer show the candidate's evidence too often."""
    significance = scored.candidate.significance
    return significance is not None and significance > SIGNIFICANT


def _movable(description: UnitDescription, full: set[str]) -> int | None:
    """The rank of the unit's best alternative that is better than chance and not yet too common."""
    for rank, scored in enumerate(description.ranked[1:], start=1):
        significance = scored.candidate.significance
        if scored.candidate.text not in full and significance is not None and significance <= SIGNIFICANT:
            return rank
    return None


def spread_layer_shares(described: Sequence[UnitDescription], layers: Sequence[str],
                        max_share: float = MAX_LAYER_SHARE) -> list[UnitDescription]:
    """No description on more than ``max_share`` of a layer's units, unless its units are alike.

    The units of an over-shared description that lose least by it (smallest margin to their
    best alternative, in agreement where ``agree`` ranked them, else in PMI) take that
    alternative, as long as it is better than chance (significance at most ``SIGNIFICANT``) and
    not itself full; the units with the clearest claim keep it. A unit
    with no such alternative keeps the shared description: its evidence says nothing else, so
    it is like the others, and ``layer_shares`` reports what is left.
    """
    result = list(described)
    by_layer: dict[str, list[int]] = {}
    for i, layer in enumerate(layers):
        by_layer.setdefault(layer, []).append(i)
    for rows in by_layer.values():
        limit = max(1, int(max_share * len(rows)))
        for _ in range(len(rows)):  # each pass settles at least one description or stops
            counts: dict[str, list[int]] = {}
            for i in rows:
                counts.setdefault(result[i].chosen.candidate.text, []).append(i)
            full = {text for text, holders in counts.items() if len(holders) >= limit}
            over = [holders for holders in counts.values() if len(holders) > limit]
            moved = False
            for holders in over:
                margin = {i: result[i].chosen.preference - (result[i].ranked[1].preference if len(result[i].ranked) > 1
                                                            else 0.0) for i in holders}
                for i in sorted(holders, key=margin.get)[: len(holders) - limit]:
                    rank = _movable(result[i], full)
                    if rank is not None:
                        result[i] = result[i].choosing(rank)
                        moved = True
                        new = result[i].chosen.candidate.text
                        counts.setdefault(new, []).append(i)
                        if len(counts[new]) >= limit:
                            full.add(new)
            if not moved:
                break
    return result


def layer_shares(described: Sequence[UnitDescription], layers: Sequence[str]) -> dict[str, tuple[str, float]]:
    """Each layer's most common description and the share of the layer's units it holds."""
    frame: dict[str, dict[str, int]] = {}
    for description, layer in zip(described, layers):
        texts = frame.setdefault(layer, {})
        texts[description.chosen.candidate.text] = texts.get(description.chosen.candidate.text, 0) + 1
    return {layer: (max(texts, key=texts.get), max(texts.values()) / sum(texts.values()))
            for layer, texts in frame.items()}
