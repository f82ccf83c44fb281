"""Descriptions and candidates: what each describer chose for a unit, and everything it weighed.

Replacing a run's descriptions by one describer happens in one transaction, so a reader sees the
old descriptions or the new ones, never a mix, and a failure leaves the old ones.
"""

from __future__ import annotations

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
