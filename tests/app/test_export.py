"""catalog_app.export: the CSV rows of chosen units from a real catalog."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from catalog_app.export import EXPORT_COLUMNS, export_csv
from milan_core.catalog import Catalog


def test_export_has_one_row_per_unit_with_openable_exemplar_paths(described_catalog: Path) -> None:
    with Catalog(described_catalog) as catalog:
        run = catalog.run()
        ids = [catalog.unit_id(run.run_id, key) for key in ("blocks.6:42", "blocks.2:5", "classifier:7")]
        frame = pd.read_csv(io.BytesIO(export_csv(catalog, ids, None)))
    assert tuple(frame.columns) == EXPORT_COLUMNS
    assert list(frame.key) == ["blocks.2:5", "blocks.6:42", "classifier:7"]  # layer order
    assert list(frame.description.fillna("")) == ["car wheels", "spotted dog faces", ""]
    assert set(frame.model) == {"efficientnet-lite0"} and set(frame.run_id) == {run.run_id}
    paths = [Path(p) for cell in frame.exemplar_paths for p in cell.split(";")]
    assert len(paths) == 3 * 5 and all(p.is_file() for p in paths)
