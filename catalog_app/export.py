"""The browser's CSV export: one row per chosen unit, with what it takes to find its pictures again.

Exemplar paths are written as full paths (each run's own resolved path of the file), in rank order
and separated by ``;``, so a spreadsheet or a script can open them directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from milan_core.catalog import Catalog
from milan_core.catalog.search import default_describer

EXPORT_COLUMNS = (
    "run_id", "model", "layer", "unit", "key", "describer", "description", "score", "log_p_given_e", "log_p",
    "confidence", "evidence_type", "threshold", "act_mean", "act_max", "exemplar_paths",
)


def export_frame(catalog: Catalog, unit_ids: Sequence[int], describer: str | None) -> pd.DataFrame:
    """The export rows of ``unit_ids`` (in run, layer, unit order) with ``describer``'s descriptions
    (default: the catalog's most used describer, as in the search)."""
    describer = describer if describer is not None else default_describer(catalog)
    frame = catalog.query(
        """
        SELECT u.run_id, r.model, u.layer, u.unit, u.layer || ':' || u.unit AS key, d.describer,
               d.description, d.score, d.log_p_given_e, d.log_p, d.confidence, d.evidence_type,
               u.threshold, u.act_mean, u.act_max,
               (SELECT string_agg(p.path, ';' ORDER BY e.rank) FROM exemplars e JOIN run_images p
                  ON p.run_id = u.run_id AND p.image_id = e.image_id WHERE e.unit_id = u.unit_id) AS exemplar_paths
        FROM units u
        JOIN runs r USING (run_id)
        JOIN layers l ON l.run_id = u.run_id AND l.layer = u.layer
        LEFT JOIN descriptions d ON d.unit_id = u.unit_id AND d.describer = ?
        WHERE list_contains(?, u.unit_id)
        ORDER BY u.run_id, l.layer_index, u.unit
        """,
        [describer, [int(i) for i in unit_ids]],
    )
    return frame[list(EXPORT_COLUMNS)]


def export_csv(catalog: Catalog, unit_ids: Sequence[int], describer: str | None) -> bytes:
    """The export as UTF-8 CSV bytes, ready for a download button."""
    return export_frame(catalog, unit_ids, describer).to_csv(index=False).encode("utf-8")
