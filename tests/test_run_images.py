"""Each run keeps its own resolved image paths: two runs over the same photos in two folders both
find their files, and a run dissected from a relative path is found from any directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from milan_core.catalog import Catalog
from milan_core.config import DissectConfig
from milan_core.describe.store import load_run_view
from milan_core.dissect import dissect
from milan_core.errors import UserError


def copy_photos(probe_dir: Path, folder: Path, count: int = 6) -> Path:
    folder.mkdir(parents=True)
    for path in sorted(probe_dir.iterdir())[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def test_two_runs_over_the_same_photos_in_two_folders_each_read_their_own(
    probe_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = copy_photos(probe_dir, tmp_path / "first")
    second = copy_photos(probe_dir, tmp_path / "elsewhere" / "second")
    out = tmp_path / "c.duckdb"
    monkeypatch.chdir(tmp_path)
    base = DissectConfig(layers=("blocks.6",), k=3, workers=0)
    dissect(DissectConfig(**{**base.as_dict(), "images": "first", "run_id": "a"}), out)
    dissect(DissectConfig(**{**base.as_dict(), "images": "elsewhere/second", "run_id": "b"}), out)
    monkeypatch.chdir("/")  # readers elsewhere: stored paths do not depend on where the job ran
    with Catalog(out) as catalog:
        assert catalog.run("a").probe_root == str(first.resolve())
        assert catalog.run("b").probe_root == str(second.resolve())
        assert catalog.query("SELECT count(*) AS n FROM images").n[0] <= 6  # the photos are stored once
        for run_id, folder in (("a", first), ("b", second)):
            paths = catalog.exemplars(catalog.unit_id(run_id, "blocks.6:11")).path
            assert all(Path(p).parent == folder.resolve() and Path(p).is_file() for p in paths), paths
    shutil.rmtree(first)
    with Catalog(out) as catalog:
        view = load_run_view(catalog, "b")
        assert all(Path(view.probe_root, p).is_file() for p in view.image_paths())
        with pytest.raises(UserError, match="are gone"):
            load_run_view(catalog, "a")
