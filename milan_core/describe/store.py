"""Reading a run for describers and writing its descriptions back, in one transaction.

The run is read with one query for all its exemplars (not one per unit). Writing replaces the
run's descriptions and candidates for that describer in a single transaction, so a reader sees
either the old descriptions or the new ones, never a mix, and a failure leaves the old ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from milan_core.catalog import Catalog, RunRecord
from milan_core.describe.base import Exemplar, RunView, UnitDescription, UnitView
from milan_core.embedding import embed
from milan_core.errors import UserError
from milan_core.exemplars import dequantise
from milan_core.models import load_recorded_model

EMBEDDED_CANDIDATES = 5  # the top candidates of each unit that get a search vector


def _preprocessing(run: RunRecord):
    return load_recorded_model(run.model, run.config.get("weights")).preprocessing


def load_run_view(catalog: Catalog, run_id: str | None) -> RunView:
    """A run's units with their decoded exemplars; a UserError if it has none."""
    run = catalog.run(run_id)
    frame = catalog.query(
        "SELECT u.unit_id, u.layer, u.unit, u.threshold, l.layer_index, l.map_height, "
        "l.map_width, e.rank, e.image_id, e.activation, e.amap_min, e.amap_max, e.amap, i.path "
        "FROM units u JOIN layers l USING (run_id, layer) JOIN exemplars e USING (unit_id) "
        "JOIN images i USING (image_id) WHERE u.run_id = ? ORDER BY l.layer_index, u.unit, e.rank",
        [run.run_id],
    )
    if frame.empty:
        raise UserError(f"run {run.run_id!r} has no exemplars to describe; dissect it again")
    probe_root = Path(run.probe_root)
    if not probe_root.is_dir():
        raise UserError(f"the probe images of run {run.run_id!r} are gone from {probe_root}; restore them there")
    units = []
    for unit_id, rows in frame.groupby("unit_id", sort=False):
        first = rows.iloc[0]
        exemplars = tuple(
            Exemplar(int(r.rank), int(r.image_id), r.path, float(r.activation),
                     dequantise(bytes(r.amap), r.amap_min, r.amap_max, int(r.map_height), int(r.map_width)))
            for r in rows.itertuples()
        )
        units.append(UnitView(int(unit_id), first.layer, int(first.unit), float(first.threshold),
                              exemplars))
    return RunView(run.run_id, run.model, probe_root, _preprocessing(run), tuple(units), run.config.get("weights"))


def _vectors(texts: Sequence[str]) -> dict[str, list[float]]:
    """One MiniLM vector per distinct text (many units share a description)."""
    distinct = sorted(set(texts))
    return {text: vector.tolist() for text, vector in zip(distinct, embed(distinct))}


def description_tables(described: Sequence[UnitDescription], describer: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``descriptions`` and ``candidates`` for these units, with search vectors."""
    top = [s.candidate.text for d in described for s in d.ranked[:EMBEDDED_CANDIDATES]]
    vectors = _vectors(top)
    descriptions = pd.DataFrame(
        {
            "unit_id": [d.unit_id for d in described],
            "describer": describer,
            "description": [d.chosen.candidate.text for d in described],
            "score": [d.chosen.score for d in described],
            "log_p_given_e": [d.chosen.candidate.log_p_given_e for d in described],
            "log_p": [d.chosen.log_p for d in described],
            "confidence": [d.confidence for d in described],
            "evidence_type": [d.chosen.candidate.evidence_type for d in described],
            "evidence": [json.dumps(dict(d.chosen.candidate.evidence)) for d in described],
            "embedding": [vectors[d.chosen.candidate.text] for d in described],
        }
    )
    rows = [
        (d.unit_id, describer, rank, s.candidate.text, s.candidate.log_p_given_e, s.log_p, s.score,
         vectors[s.candidate.text] if rank < EMBEDDED_CANDIDATES else None)
        for d in described for rank, s in enumerate(d.ranked)
    ]
    candidates = pd.DataFrame(
        rows, columns=["unit_id", "describer", "rank", "text", "log_p_given_e", "log_p", "score", "embedding"]
    )
    return descriptions, candidates


def write_descriptions(catalog_path: Path, run_id: str, describer: str,
                       descriptions: pd.DataFrame, candidates: pd.DataFrame) -> None:
    """Replace the run's descriptions and candidates by this describer, all or nothing."""
    units = "SELECT unit_id FROM units WHERE run_id = ?"
    with Catalog(catalog_path, writable=True) as catalog, catalog.transaction() as con:
        for table, frame in (("descriptions", descriptions), ("candidates", candidates)):
            con.execute(f"DELETE FROM {table} WHERE describer = ? AND unit_id IN ({units})", [describer, run_id])
            con.register("new_rows", frame)
            columns = ", ".join(frame.columns)
            con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM new_rows")
            con.unregister("new_rows")


def embedding_array(values: Sequence[Sequence[float]]) -> np.ndarray:
    """Stored FLOAT[] vectors back to an (n, 384) array."""
    return np.asarray([np.asarray(v, dtype=np.float32) for v in values])
