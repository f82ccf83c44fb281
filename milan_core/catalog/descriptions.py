"""Reading a run's descriptions and candidates back, layer by layer (evaluation, significance)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from milan_core.catalog.connection import Catalog


def run_descriptions(catalog: Catalog, run_id: str, describer: str, layers: Sequence[str]) -> pd.DataFrame:
    """layer, unit, unit_id, description, confidence, significance of every unit of ``layers``."""
    return catalog.query(
        "SELECT u.layer, u.unit, u.unit_id, d.description, d.confidence, d.significance "
        "FROM units u JOIN descriptions d USING (unit_id) "
        "WHERE u.run_id = ? AND d.describer = ? AND list_contains(?, u.layer) ORDER BY u.layer, u.unit",
        [run_id, describer, list(layers)],
    )


def unit_candidates(catalog: Catalog, unit_ids: Sequence[int], describer: str) -> pd.DataFrame:
    """unit_id, rank, text of every stored candidate of these units, best first."""
    return catalog.query(
        "SELECT unit_id, rank, text FROM candidates WHERE describer = ? AND list_contains(?, unit_id) "
        "ORDER BY unit_id, rank",
        [describer, [int(u) for u in unit_ids]],
    )


def described_units(catalog: Catalog, run_id: str, describer: str) -> int:
    """How many units of the run have a description by this describer."""
    return int(catalog.query(
        "SELECT count(*) AS n FROM descriptions JOIN units USING (unit_id) WHERE run_id = ? AND describer = ?",
        [run_id, describer],
    ).n.iloc[0])
