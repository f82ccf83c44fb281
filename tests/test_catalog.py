"""The catalog file: opening it safely, refusing what it cannot read, and all-or-nothing writes."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from milan_core.catalog import Catalog, RunTables
from milan_core.catalog.connection import BLOCK_SIZE
from milan_core.catalog.schema import SCHEMA_VERSION
from milan_core.errors import UserError


def test_missing_empty_and_foreign_files_are_refused_with_the_command_to_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no catalog at .* make one with: python -m milan_core dissect"):
        Catalog(tmp_path / "missing.duckdb")
    foreign = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    with pytest.raises(UserError, match="holds no catalog"):
        Catalog(foreign)
    text = tmp_path / "notes.duckdb"
    text.write_text("hello")
    with pytest.raises(UserError, match="not a DuckDB catalog|cannot open"):
        Catalog(text)


def test_a_new_file_gets_the_schema_small_blocks_and_an_odd_path(tmp_path: Path) -> None:
    path = tmp_path / "it's a catalog" / "c.duckdb"
    with Catalog(path, writable=True) as catalog:
        assert catalog.schema_version() == SCHEMA_VERSION
        assert catalog.con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0] == BLOCK_SIZE
    with Catalog(path) as reader:
        assert reader.runs().empty
        with pytest.raises(UserError, match="has no runs yet"):
            reader.run()


def test_readers_cannot_write(small_catalog: Path) -> None:
    with Catalog(small_catalog) as catalog, pytest.raises(duckdb.Error):
        catalog.con.execute("DELETE FROM units")


def test_unknown_run_and_unit_name_what_exists(small_catalog: Path) -> None:
    with Catalog(small_catalog) as catalog:
        run_id = catalog.run().run_id
        with pytest.raises(UserError, match=f"unknown run 'nope'; this catalog has: {run_id}"):
            catalog.run("nope")
        for key in ("blocks.6:9999", "nolayer:1", "blocks.6:x"):
            with pytest.raises(UserError, match="no unit"):
                catalog.unit_id(run_id, key)


def test_a_failed_write_changes_nothing(small_catalog: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    shutil.copy(small_catalog, path)
    with Catalog(path) as catalog:
        run = catalog.run()
        before = catalog.query("SELECT count(*) AS n FROM units").n[0]
        layers = catalog.layers(run.run_id)
    broken = RunTables(
        run=run,
        layers=layers.drop(columns="run_id"),
        units=pd.DataFrame({"layer": ["blocks.6"], "unit": [0]}),  # missing columns: fails after the delete
        images=pd.DataFrame(),
        exemplars=pd.DataFrame(columns=["layer", "unit", "rank", "sha256"]),  # other exemplars: all is replaced
    )
    with Catalog(path, writable=True) as catalog, pytest.raises(duckdb.ConstraintException, match="NOT NULL"):
        catalog.write_run(broken)
    with Catalog(path) as catalog:
        assert catalog.query("SELECT count(*) AS n FROM units").n[0] == before
        assert catalog.run().run_id == run.run_id
        assert len(catalog.layers(run.run_id)) == 3


def test_reading_does_not_touch_the_file(small_catalog: Path) -> None:
    before = hashlib.sha256(small_catalog.read_bytes()).hexdigest()
    with Catalog(small_catalog) as catalog:
        unit_id = catalog.unit_id(catalog.run().run_id, "blocks.2:3")
        catalog.exemplars(unit_id)
        catalog.units(limit=10, offset=5)
    assert hashlib.sha256(small_catalog.read_bytes()).hexdigest() == before
