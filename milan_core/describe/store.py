"""Reading a run for describers and writing its descriptions back, in one transaction.

The run is read with one query for all its exemplars (not one per unit). Writing replaces the
run's descriptions and candidates for that describer in a single transaction, so a reader sees
either the old descriptions or the new ones, never a mix, and a failure leaves the old ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from milan_core.catalog import Catalog
from milan_core.describe.base import Exemplar, RunView, UnitDescription, UnitView
from milan_core.embedding import cached_embed
from milan_core.errors import UserError
from milan_core.exemplars import dequantise_many
from milan_core.models import recorded_preprocessing

EMBEDDED_CANDIDATES = 5  # the top candidates of each unit that get a search vector


def load_run_view(catalog: Catalog, run_id: str | None) -> RunView:
    """A run's units with their decoded exemplars; a UserError if it has none."""
    run = catalog.run(run_id)
    frame = catalog.run_exemplars(run.run_id)
    if frame.empty:
        raise UserError(f"run {run.run_id!r} has no exemplars to describe; dissect it again")
    probe_root = Path(run.probe_root)
    if not probe_root.is_dir():
        raise UserError(f"the probe images of run {run.run_id!r} are gone from {probe_root}; restore them there")
    maps = _decoded_maps(frame)
    columns = frame[["unit_id", "layer", "unit", "threshold", "rank", "image_id", "path", "activation"]]
    exemplars: dict[int, list[Exemplar]] = {}
    heads: dict[int, tuple[str, int, float]] = {}
    for row, (unit_id, layer, unit, threshold, rank, image_id, path, activation) in enumerate(
        columns.itertuples(index=False, name=None)
    ):
        heads.setdefault(unit_id, (layer, int(unit), float(threshold)))
        exemplar = Exemplar(int(rank), int(image_id), path, float(activation), maps[row])
        exemplars.setdefault(unit_id, []).append(exemplar)
    units = [UnitView(int(u), *heads[u], tuple(e)) for u, e in exemplars.items()]
    weights = run.config.get("weights")
    return RunView(run.run_id, run.model, probe_root, recorded_preprocessing(run.model, weights), tuple(units), weights)


def _decoded_maps(frame: pd.DataFrame) -> list[np.ndarray]:
    """Every stored map decoded, in the frame's row order, all maps of one shape at once."""
    maps: list[np.ndarray] = [np.empty(0)] * len(frame)
    for (height, width), rows in frame.groupby(["map_height", "map_width"], sort=False):
        codes = np.frombuffer(b"".join(bytes(a) for a in rows.amap), dtype=np.uint8).reshape(len(rows), -1)
        decoded = dequantise_many(codes, rows.amap_min.to_numpy(), rows.amap_max.to_numpy(), int(height), int(width))
        for position, amap in zip(rows.index, decoded):
            maps[position] = amap
    return maps


def candidate_vectors(described: Sequence[UnitDescription], known: Sequence[str] = ()) -> dict[str, list[float]]:
    """One MiniLM vector per distinct candidate text (many units share them), from the cache, which
    learns the describer's ``known`` texts at the same time when it has to load the model: ``agree``
    compares every candidate of a unit, and the catalog keeps the top ones for search."""
    distinct = sorted({s.candidate.text for d in described for s in d.ranked})
    return {text: vector.tolist() for text, vector in zip(distinct, cached_embed(distinct, also=known))}


def description_tables(described: Sequence[UnitDescription], describer: str,
                       vectors: dict[str, list[float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``descriptions`` and ``candidates`` for these units, with search vectors
    (``vectors``: ``candidate_vectors`` of the same units)."""
    descriptions = pd.DataFrame(
        {
            "unit_id": [d.unit_id for d in described],
            "describer": describer,
            "description": [d.chosen.candidate.text for d in described],
            "score": [d.chosen.score for d in described],
            "log_p_given_e": [d.chosen.candidate.log_p_given_e for d in described],
            "log_p": [d.chosen.log_p for d in described],
            "confidence": [d.confidence for d in described],
            "significance": [d.significance for d in described],
            "agreement": [d.chosen.agreement for d in described],
            "evidence_type": [d.chosen.candidate.evidence_type for d in described],
            "evidence": [json.dumps(dict(d.chosen.candidate.evidence)) for d in described],
            "embedding": [vectors[d.chosen.candidate.text] for d in described],
        }
    )
    rows = [
        (d.unit_id, describer, rank, s.candidate.text, s.candidate.log_p_given_e, s.log_p, s.score,
         s.candidate.significance, s.agreement, vectors[s.candidate.text] if rank < EMBEDDED_CANDIDATES else None)
        for d in described for rank, s in enumerate(d.ranked)
    ]
    columns = ["unit_id", "describer", "rank", "text", "log_p_given_e", "log_p", "score", "significance",
               "agreement", "embedding"]
    candidates = pd.DataFrame(rows, columns=columns)
    return descriptions, candidates


def write_descriptions(catalog_path: Path, run_id: str, describer: str,
                       descriptions: pd.DataFrame, candidates: pd.DataFrame) -> None:
    """Replace the run's descriptions and candidates by this describer, all or nothing."""
    with Catalog(catalog_path, writable=True) as catalog:
        catalog.replace_descriptions(run_id, describer, descriptions, candidates)

