"""Migrations: a catalog written with version 1's tables reads again after ``migrate``, and the
migrated tables are exactly the ones a new catalog gets (so every schema change has its step)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from milan_core.catalog import Catalog, check_writable
from milan_core.catalog.migrate import MIGRATIONS, V1_DDL
from milan_core.catalog.schema import CASCADE, SCHEMA_VERSION
from milan_core.cli import main
from milan_core.describe.store import load_run_view
from milan_core.errors import UserError


def literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def write_v1_catalog(path: Path, source: Path) -> None:
    """Version 1's tables (as that code created them) holding the runs of ``source``, with image
    paths stored as version 1 did: relative to the run's probe folder, one path per image."""
    with duckdb.connect(str(path)) as con:
        for statement in V1_DDL:
            con.execute(statement)
        con.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        con.execute(f"ATTACH {literal(source)} AS src (READ_ONLY)")
        for table in ("runs", "layers", "exemplars"):
            con.execute(f"INSERT INTO {table} SELECT * FROM src.{table}")
        for table in ("descriptions", "candidates"):  # version 3 added significance, 4 agreement
            con.execute(f"INSERT INTO {table} SELECT * EXCLUDE (significance, agreement) FROM src.{table}")
        con.execute(
            "INSERT INTO units SELECT unit_id, run_id, layer, unit, threshold, quantile, act_mean, act_std, "
            "act_min, act_max, act_min, act_max, hist FROM src.units"
        )
        con.execute(
            "INSERT INTO images SELECT i.image_id, i.sha256, "
            "substr(min(p.path), length(min(r.probe_root)) + 2), i.width, i.height, i.label, i.thumbnail "
            "FROM src.images i JOIN src.run_images p USING (image_id) JOIN src.runs r USING (run_id) "
            "GROUP BY ALL"
        )


def schema_of(path: Path) -> tuple[list[tuple], set[tuple]]:
    """Every table's columns (name, type, nullability, in order) and every constraint."""
    with duckdb.connect(str(path), read_only=True) as con:
        columns = con.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
        constraints = con.execute(
            "SELECT table_name, constraint_type, constraint_column_names FROM duckdb_constraints()"
        ).fetchall()
    return columns, {(t, kind, tuple(names)) for t, kind, names in constraints}


@pytest.fixture()
def v1_catalog(small_catalog: Path, tmp_path: Path) -> Path:
    path = tmp_path / "old.duckdb"
    write_v1_catalog(path, small_catalog)
    return path


def test_an_old_catalog_names_the_migrate_command_to_readers_and_writers(v1_catalog: Path) -> None:
    command = f"migrate it once with: python -m milan_core migrate --catalog {v1_catalog}"
    with pytest.raises(UserError, match=command):
        Catalog(v1_catalog)
    with pytest.raises(UserError, match=command):
        check_writable(v1_catalog)


def test_migrate_brings_a_version_1_catalog_to_the_current_schema(
    v1_catalog: Path, small_catalog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--catalog", str(v1_catalog)]) == 0
    assert f"schema 1 -> {SCHEMA_VERSION}" in capsys.readouterr().out
    fresh = tmp_path / "fresh.duckdb"
    Catalog(fresh, writable=True).close()
    assert schema_of(v1_catalog) == schema_of(fresh)
    with Catalog(v1_catalog) as migrated, Catalog(small_catalog) as original:
        run = migrated.run()
        assert run == original.run()
        unit_id = migrated.unit_id(run.run_id, "blocks.6:7")
        assert migrated.exemplars(unit_id).path.tolist() == original.exemplars(unit_id).path.tolist()
        view = load_run_view(migrated, run.run_id)
    assert all(Path(view.probe_root, path).is_file() for path in view.image_paths())
    assert main(["migrate", "--catalog", str(v1_catalog)]) == 0
    assert f"already has schema {SCHEMA_VERSION}" in capsys.readouterr().out


def test_a_relative_probe_folder_becomes_a_full_path_where_it_is_found(
    small_catalog: Path, probe_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Version 1 stored the folder as typed; migrate resolves it from the directory it runs in."""
    old = tmp_path / "old.duckdb"
    write_v1_catalog(old, small_catalog)
    relative = Path("..") / probe_dir.name
    with duckdb.connect(str(old)) as con:
        con.execute("UPDATE runs SET probe_root = ?", [str(relative)])
    elsewhere = tmp_path / "a" / "b"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # the folder is not ../probe* from here
    assert main(["migrate", "--catalog", str(old)]) == 0
    assert f"read its images from {str(relative)!r}, which is not there" in capsys.readouterr().err
    monkeypatch.chdir(probe_dir)  # where ../probe* is the probe folder
    assert main(["migrate", "--catalog", str(old)]) == 0
    assert "note:" not in capsys.readouterr().err
    monkeypatch.chdir("/")
    with Catalog(old) as catalog:
        run = catalog.run()
        assert run.probe_root == str(probe_dir.resolve())
        paths = catalog.exemplars(catalog.unit_id(run.run_id, "blocks.2:0")).path
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths), paths


def test_migrate_refuses_what_is_not_a_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.duckdb"
    text.write_text("hello")
    assert main(["migrate", "--catalog", str(text)]) == 2
    assert "not a DuckDB catalog" in capsys.readouterr().err
    foreign = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    assert main(["migrate", "--catalog", str(foreign)]) == 2
    assert "holds no catalog" in capsys.readouterr().err


def test_the_steps_lead_one_by_one_to_the_current_version() -> None:
    assert [step.to_version for step in MIGRATIONS] == list(range(2, SCHEMA_VERSION + 1))


def test_every_table_that_points_at_a_run_or_a_result_is_deleted_with_it(tmp_path: Path) -> None:
    """A new table holding run_id, unit_id, ablation_id or audit_id needs its line in CASCADE."""
    path = tmp_path / "c.duckdb"
    Catalog(path, writable=True).close()
    owners = {"run_id": "runs", "unit_id": "units", "ablation_id": "ablations", "audit_id": "audits"}
    with duckdb.connect(str(path), read_only=True) as con:
        pointing = {
            (table, column) for table, column in con.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
            ).fetchall() if column in owners and owners[column] != table
        }
    assert pointing == {(link.table, link.column) for link in CASCADE}
