"""Results of the applications: audits, ablation studies and edits.

Each result has an id made from what produced it, so running the same study again replaces the
stored one (its owned rows too, through ``schema.CASCADE``) in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from milan_core.catalog.base import CatalogBase

CHECK_COLUMNS = (
    "ablation_id", "concept", "n_units", "n_concept_images", "n_other_images", "concept_before", "concept_after",
    "other_before", "other_after", "random_concept_after", "random_concept_sd", "random_other_after",
)
CURVE_COLUMNS = ("ablation_id", "curve", "seed", "step", "n_ablated", "fraction", "accuracy")


class ResultQueries(CatalogBase):
    """The ``audits``, ``audit_units``, ``ablations``, ``ablation_curves``, ``ablation_checks`` and
    ``edits`` tables."""

    def store_audit(self, audit_id: str, query: str, run_ids: Sequence[str], describer: str | None,
                    min_similarity: float, units: pd.DataFrame) -> None:
        """An audit and its matching units (unit_id, rank_score, similarity, keyword_hit)."""
        rows = units.rename(columns={"rank_score": "score"}).assign(audit_id=audit_id)
        with self.transaction():
            self.delete_cascade("audits", "audit_id = ?", audit_id)
            self.insert_row("audits", {
                "audit_id": audit_id, "query": query, "runs": list(run_ids), "describer": describer,
                "min_similarity": min_similarity,
            }, stamped=["created_at"])
            self.insert_frame("audit_units", rows, ["audit_id", "unit_id", "score", "similarity", "keyword_hit"])

    def store_ablation(self, ablation: dict[str, Any], curves: pd.DataFrame, checks: pd.DataFrame) -> None:
        """An ablation study (the ``ablations`` columns but created_at), its curves and checks."""
        key = ablation["ablation_id"]
        with self.transaction():
            self.delete_cascade("ablations", "ablation_id = ?", key)
            self.insert_row("ablations", {**ablation, "config": json.dumps(ablation["config"])},
                            stamped=["created_at"])
            self.insert_frame("ablation_curves", curves.assign(ablation_id=key), CURVE_COLUMNS)
            if not checks.empty:
                self.insert_frame("ablation_checks", checks.assign(ablation_id=key), CHECK_COLUMNS)

    def store_edit(self, edit: dict[str, Any]) -> None:
        """An edit (the ``edits`` columns but created_at), replacing one with the same id."""
        with self.transaction():
            self.delete_cascade("edits", "edit_id = ?", edit["edit_id"])
            self.insert_row("edits", edit, stamped=["created_at"])

    def ablations(self) -> pd.DataFrame:
        """Every stored ablation study, newest first."""
        return self.query("SELECT * FROM ablations ORDER BY created_at DESC")

    def ablation_curves(self, ablation_id: str) -> pd.DataFrame:
        return self.query(
            "SELECT * FROM ablation_curves WHERE ablation_id = ? ORDER BY curve, seed, step", [ablation_id]
        )

    def ablation_checks(self, ablation_id: str) -> pd.DataFrame:
        return self.query("SELECT * FROM ablation_checks WHERE ablation_id = ? ORDER BY concept", [ablation_id])
