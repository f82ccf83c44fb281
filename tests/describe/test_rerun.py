"""Re-dissecting with the same parameters keeps a run's descriptions when its exemplars are the
same, and otherwise says on stderr what was dropped and the command that describes it again."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import duckdb
import pytest

from milan_core.catalog import Catalog
from milan_core.cli import main


def same_dissection(probe_dir: Path, out: Path) -> list[str]:
    """The command line of the shared small catalog's dissection (``small_config``)."""
    return ["dissect", "--images", str(probe_dir), "--layers", "blocks.2,blocks.6,classifier", "--k", "5",
            "--batch-size", "8", "--workers", "0", "--out", str(out)]


def descriptions(path: Path) -> list[tuple]:
    with Catalog(path) as catalog:
        return catalog.query(
            "SELECT u.unit_id, u.layer, u.unit, d.describer, d.description, d.score FROM descriptions d "
            "JOIN units u USING (unit_id) ORDER BY u.unit_id"
        ).values.tolist()


def test_same_exemplars_keep_the_descriptions(
    described_catalog: Path, probe_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.duckdb"
    shutil.copy(described_catalog, path)
    before = descriptions(path)
    assert len(before) == 40 + 320 + 1000  # blocks.2, blocks.6, classifier
    assert main(same_dissection(probe_dir, path)) == 0
    captured = capsys.readouterr()
    assert "note:" not in captured.err and "its descriptions and results are kept" in captured.out
    assert descriptions(path) == before  # same unit ids, same rows


def test_changed_exemplars_drop_descriptions_and_say_how_to_get_them_back(
    described_catalog: Path, probe_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.duckdb"
    shutil.copy(described_catalog, path)
    with duckdb.connect(str(path)) as con:  # as if a probe photo had changed since the first run
        con.execute("DELETE FROM exemplars WHERE rank = 4 AND unit_id = (SELECT min(unit_id) FROM units)")
    assert main(same_dissection(probe_dir, path)) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "1360 descriptions" in notes[0], notes
    assert descriptions(path) == []
    command = notes[0].split("describe it again with: ")[1]
    assert command == f"python -m milan_core describe --catalog {path} --run {Catalog(path).run().run_id} " \
                      "--describer evidence"
    assert main(shlex.split(command)[3:]) == 0
    assert len(descriptions(path)) == 1360
