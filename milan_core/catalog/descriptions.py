"""Descriptions and candidates: what each describer chose for a unit, and everything it weighed.

Replacing a run's descriptions by one describer happens in one transaction, so a reader sees the
old descriptions or the new ones, never a mix, and a failure leaves the old ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from milan_core.catalog.base import CatalogBase

RUN_UNITS = "describer = ? AND unit_id IN (SELECT unit_id FROM units WHERE run_id = ?)"


class DescriptionQueries(CatalogBase):
    """The ``descriptions`` and ``candidates`` tables."""

    def replace_descriptions(self, run_id: str, describer: str, descriptions: pd.DataFrame,
                             candidates: pd.DataFrame) -> None:
        """The run's descriptions and candidates by ``describer`` become these rows, all or nothing."""
        with self.transaction() as con:
            for table, frame in (("descriptions", descriptions), ("candidates", candidates)):
                con.execute(f"DELETE FROM {table} WHERE {RUN_UNITS}", [describer, run_id])
                self.insert_frame(table, frame)

    def described_count(self, run_id: str, describer: str) -> int:
        """How many of the run's units ``describer`` has described."""
        return int(self.scalar(f"SELECT count(*) FROM descriptions WHERE {RUN_UNITS}", [describer, run_id]))

    def describer_counts(self, run_id: str) -> pd.DataFrame:
        """describer, n: the describers of a run, the one with most descriptions first."""
        return self.query(
            "SELECT d.describer, count(*) AS n FROM descriptions d JOIN units u USING (unit_id) "
            "WHERE u.run_id = ? GROUP BY d.describer ORDER BY n DESC, d.describer",
            [run_id],
        )

    def layer_descriptions(self, run_id: str, layer: str, describer: str) -> pd.DataFrame:
        """unit, description of every described unit of one layer, in unit order."""
        return self.query(
            "SELECT u.unit, d.description FROM units u JOIN descriptions d USING (unit_id) "
            "WHERE u.run_id = ? AND u.layer = ? AND d.describer = ? ORDER BY u.unit",
            [run_id, layer, describer],
        )

    def run_descriptions(self, run_id: str, describer: str, layers: Sequence[str]) -> pd.DataFrame:
        """layer, unit, unit_id, description, confidence, significance of every unit of ``layers``."""
        return self.query(
            "SELECT u.layer, u.unit, u.unit_id, d.description, d.confidence, d.significance "
            "FROM units u JOIN descriptions d USING (unit_id) "
            "WHERE u.run_id = ? AND d.describer = ? AND list_contains(?, u.layer) ORDER BY u.layer, u.unit",
            [run_id, describer, list(layers)],
        )

    def candidate_scores(self, unit_ids: Sequence[int], describer: str) -> pd.DataFrame:
        """unit_id, text, log_p_given_e, log_p, significance of every stored candidate of these units."""
        return self.query(
            "SELECT unit_id, text, log_p_given_e, log_p, significance FROM candidates "
            "WHERE describer = ? AND list_contains(?, unit_id) ORDER BY unit_id, rank",
            [describer, [int(u) for u in unit_ids]],
        )

    def unit_candidates(self, unit_ids: Sequence[int], describer: str) -> pd.DataFrame:
        """unit_id, rank, text of every stored candidate of these units, best first."""
        return self.query(
            "SELECT unit_id, rank, text FROM candidates WHERE describer = ? AND list_contains(?, unit_id) "
            "ORDER BY unit_id, rank",
            [describer, [int(u) for u in unit_ids]],
        )
