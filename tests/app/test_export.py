"""catalog_app.export: the CSV rows of chosen units from a real catalog, in rank order, with notes."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from catalog_app.export import EXPORT_COLUMNS, export_csv
from milan_core.catalog import Catalog
from milan_core.catalog.notes import Notes
from milan_core.catalog.search import search_units


def test_export_has_one_row_per_unit_in_the_given_order_with_openable_exemplar_paths(described_catalog: Path) -> None:
    with Catalog(described_catalog) as catalog:
        run = catalog.run()
        ids = [catalog.unit_id(run.run_id, key) for key in ("blocks.6:42", "blocks.2:5", "classifier:7")]
        frame = pd.read_csv(io.BytesIO(export_csv(catalog, ids, None)))
        stored = catalog.exemplars(ids[0], decode=False).activation.tolist()
    assert tuple(frame.columns) == EXPORT_COLUMNS
    assert list(frame.key) == ["blocks.6:42", "blocks.2:5", "classifier:7"] and list(frame["rank"]) == [1, 2, 3]
    assert list(frame.description.fillna("")) == ["spotted dog faces", "car wheels", ""]
    assert set(frame.model) == {"efficientnet-lite0"} and set(frame.run_id) == {run.run_id}
    paths = [Path(p) for cell in frame.exemplar_paths for p in cell.split(";")]
    assert len(paths) == 3 * 5 and all(p.is_file() for p in paths)
    activations = [float(a) for a in frame.exemplar_activations[0].split(";")]
    assert activations == [round(a, 4) for a in stored] and activations == sorted(activations, reverse=True)


def test_export_of_a_search_keeps_its_ranking_and_carries_votes_and_labels(
    described_catalog: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "catalog.duckdb"
    copy.write_bytes(described_catalog.read_bytes())
    with Catalog(copy) as catalog:
        found = search_units(catalog, "faces", min_similarity=0.4, limit=None)
        run_id = catalog.run().run_id
        notes = Notes(copy)
        notes.vote(run_id, "blocks.6:17", "evidence", "human faces", 1, "ann")
        notes.vote(run_id, "blocks.6:17", "evidence", "human faces", -1, "bob")
        notes.vote(run_id, "blocks.6:17", "evidence", "human faces", 1, "bob")  # bob changed his mind
        notes.add_label(run_id, "blocks.6:42", "muzzles", "ann")
        frame = pd.read_csv(io.BytesIO(export_csv(catalog, found.unit_id.tolist(), None))).set_index("key")
    assert list(frame.index) == list(found.key)  # rank order, not catalog order
    assert frame.loc["blocks.6:17", ["agree", "disagree"]].tolist() == [2, 0]
    assert frame.loc["blocks.6:42", "labels"] == "muzzles" and frame.loc["blocks.6:42", "agree"] == 0
