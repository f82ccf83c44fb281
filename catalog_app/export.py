"""The browser's CSV export: one row per chosen unit, with what it takes to find its pictures again.

Rows come in the order given (a search's rank order) with that ``rank``; each row's exemplar paths
are full paths (the run's probe root joined with the stored relative path) and their activations,
both in exemplar rank order and separated by ``;``, so a spreadsheet or a script can open them
directly; then what people said about the unit (agree/disagree with its description, labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from milan_core.catalog import Catalog
from milan_core.catalog.browse import EXPORT_UNIT_COLUMNS, export_rows
from milan_core.catalog.notes import Notes
from milan_core.catalog.search import default_describer

EXPORT_COLUMNS = (
    "rank",
    *EXPORT_UNIT_COLUMNS,
    "exemplar_paths",
    "exemplar_activations",
    "agree",
    "disagree",
    "labels",
)


def export_frame(catalog: Catalog, unit_ids: Sequence[int], describer: str | None) -> pd.DataFrame:
    """The export rows of ``unit_ids`` in that order, with ``describer``'s descriptions (default: the
    catalog's most used describer, as in the search) and the notes kept beside the catalog."""
    describer = describer if describer is not None else default_describer(catalog)
    frame = export_rows(catalog, unit_ids, describer)
    notes = Notes(catalog.path)
    votes = notes.vote_counts().rename(columns={"unit_key": "key"})
    labels = notes.unit_labels().rename(columns={"unit_key": "key"})
    frame = frame.merge(votes, on=["run_id", "key", "description"], how="left").merge(
        labels, on=["run_id", "key"], how="left"
    )
    frame[["agree", "disagree"]] = frame[["agree", "disagree"]].fillna(0).astype(int)
    return frame.sort_values("rank")[list(EXPORT_COLUMNS)].reset_index(drop=True)


def export_csv(catalog: Catalog, unit_ids: Sequence[int], describer: str | None) -> bytes:
    """The export as UTF-8 CSV bytes, ready for a download button."""
    return export_frame(catalog, unit_ids, describer).to_csv(index=False).encode("utf-8")
