"""Fit the evidence describer's kind prior (``evidence.KIND_PRIOR``) to blind annotations.

How readily people describe a region by each kind of evidence — its parts, its spots and edges,
its colours, where it lies — is a property of people, not of a model, so it is learned the way
MILAN's captioner learns its words: from annotations. This script replays the selection rule on
the candidates a describe run stored (``log p(d|E) - λ log p(d)``, chance-level candidates last)
with a per-kind offset added, and picks each kind's offset on a coarse grid by coordinate ascent
to maximise the mean MiniLM similarity with the ``--train`` annotations (ties: the smaller
offset); objects are the reference (0). ``--held-out`` sets are only reported, never fitted, and
each training set is also reported held out of a fit on the others (leave one set out).

The replay leaves out ``spread_layer_shares`` (the per-layer cap), so its figures are a little
above a real run's; the README gives a real run's.

Usage (catalogs described with the kind prior off, i.e. ``KIND_PRIOR = {}``, or with any prior:
the stored log p(d|E) and log p(d) do not depend on it):
    python scripts/fit_kind_prior.py \\
        --train /tmp/l0.duckdb:data/annotations/efficientnet-lite0/annotations.csv \\
        --train /tmp/l1.duckdb:data/annotations/efficientnet-lite1/annotations.csv \\
        --train /tmp/l2.duckdb:data/annotations/efficientnet-lite2/annotations.csv \\
        --held-out /tmp/l0.duckdb:../shared/data/annotations-lite0/annotations.csv
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from milan_core.catalog import Catalog  # noqa: E402
from milan_core.describe.attributes import empty_attributes, phrase_table  # noqa: E402
from milan_core.describe.base import DEFAULT_LAMBDA, NO_EVIDENCE_TEXT, SIGNIFICANT  # noqa: E402
from milan_core.describe.evaluate import read_annotations  # noqa: E402
from milan_core.describe.parts import part_texts  # noqa: E402
from milan_core.embedding import cached_embed  # noqa: E402

KINDS = ("part", "shape", "texture", "colour", "position", "scene", "none")  # "object" is the reference
GRID = (-0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Unit:
    """One annotated unit's stored candidates, as arrays, and each one's similarity to the annotation."""

    pmi: np.ndarray
    kinds: np.ndarray
    chance: np.ndarray
    similarity: np.ndarray


def text_kinds() -> dict[str, str]:
    """The evidence kind of every text the evidence describer proposes (synsets are objects)."""
    table = phrase_table(empty_attributes())
    kinds = dict(zip(table.texts, table.kinds))
    kinds.update({text: "part" for text in part_texts()})
    kinds[NO_EVIDENCE_TEXT] = "none"
    return kinds


def load_set(spec: str, kinds: dict[str, str]) -> list[Unit]:
    """``CATALOG:ANNOTATIONS`` -> the annotated units of the catalog's newest run, described by evidence."""
    catalog_path, annotations_path = spec.split(":", 1)
    with Catalog(Path(catalog_path)) as catalog:
        run = catalog.run()
        annotations = read_annotations(Path(annotations_path), run.model)
        units = catalog.run_descriptions(run.run_id, "evidence", sorted(set(annotations.layer)))
        scored = annotations.merge(units, on=["layer", "unit"])
        candidates = catalog.candidate_scores(scored.unit_id.tolist(), "evidence")
    texts = sorted(set(candidates.text) | set(scored.annotation))
    vectors = dict(zip(texts, cached_embed(texts)))
    found = []
    for row in scored.itertuples():
        mine = candidates[candidates.unit_id == row.unit_id]
        found.append(Unit(
            (mine.log_p_given_e - DEFAULT_LAMBDA * mine.log_p).to_numpy(),
            np.array([kinds.get(t, "object") for t in mine.text]),
            (mine.significance.fillna(0.0) > SIGNIFICANT).to_numpy(),
            np.array([float(vectors[t] @ vectors[row.annotation]) for t in mine.text]),
        ))
    return found


def similarity(units: list[Unit], prior: dict[str, float]) -> float:
    """Mean similarity of the candidate each unit would choose with this kind prior."""
    chosen = []
    for unit in units:
        score = unit.pmi + np.array([prior.get(k, 0.0) for k in unit.kinds]) - 1e3 * unit.chance
        chosen.append(unit.similarity[int(np.argmax(score))])
    return float(np.mean(chosen))


def fit(sets: list[list[Unit]], sweeps: int = 3) -> dict[str, float]:
    """Coordinate ascent over ``GRID`` for each kind, the mean over ``sets`` weighing each set alike."""
    prior: dict[str, float] = {}
    for _ in range(sweeps):
        for kind in KINDS:
            prior[kind] = max(GRID, key=lambda v: (np.mean([similarity(s, {**prior, kind: v}) for s in sets]), -abs(v)))
    return {k: v for k, v in prior.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="append", required=True, help="CATALOG:ANNOTATIONS (repeat)")
    parser.add_argument("--held-out", action="append", default=[], help="CATALOG:ANNOTATIONS, only reported")
    args = parser.parse_args()
    kinds = text_kinds()
    train = {spec: load_set(spec, kinds) for spec in args.train}
    held = {spec: load_set(spec, kinds) for spec in args.held_out}
    prior = fit(list(train.values()))
    print("kind prior:", prior)
    for spec, units in {**train, **held}.items():
        role = "train" if spec in train else "held out"
        print(f"{role:8} {spec}: {similarity(units, {}):.3f} without -> {similarity(units, prior):.3f} with")
    for spec, units in train.items():
        others = fit([u for s, u in train.items() if s != spec])
        print(f"left out {spec}: {similarity(units, {}):.3f} -> {similarity(units, others):.3f} with {others}")


if __name__ == "__main__":
    main()
