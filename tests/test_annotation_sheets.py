"""scripts/annotation_sheets.py: blind sheets rendered from a real catalog, and answers joined back."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from catalog_app.render import thumbnail_at
from milan_core.catalog import Catalog
from milan_core.errors import UserError
from milan_core.exemplars import mask

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "annotation_sheets.py"
spec = importlib.util.spec_from_file_location("annotation_sheets", SCRIPT)
sheets_script = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = sheets_script  # dataclasses look their module up there
spec.loader.exec_module(sheets_script)

TILE = 120
EXCLUDED = {"blocks.2:0", "blocks.2:1", "blocks.2:2", "blocks.6:5"}


@pytest.fixture(scope="module")
def rendered(small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    """Three units of blocks.2 and of blocks.6, some excluded, rendered into separate folders."""
    root = tmp_path_factory.mktemp("annotation")
    sample = root / "before.json"
    sample.write_text(json.dumps({"units": sorted(EXCLUDED)}))
    made = sheets_script.render_sheets(
        small_catalog, ["blocks.2", "blocks.6"], 3, 7, root / "sheets", root / "keys",
        exclude=sheets_script.excluded_keys([sample]), tile=TILE,
    )
    return root / "sheets", root / "keys", made


def test_the_sheets_folder_holds_only_opaque_sheets_of_the_grid_size(rendered: tuple[Path, Path, list]) -> None:
    sheets, keys, _ = rendered
    assert sorted(p.name for p in sheets.iterdir()) == [f"sheet-{i:03d}.png" for i in range(1, 7)]
    gap = sheets_script.GAP
    for path in sheets.iterdir():
        with Image.open(path) as sheet:
            assert sheet.size == (4 * TILE + 3 * gap, 2 * TILE + gap)
            assert not sheet.text  # no text chunks in the file either
    assert not (sheets / "key.csv").exists() and (keys / "key.csv").exists()


def test_tiles_keep_the_region_and_dim_the_rest_to_a_quarter(
    small_catalog: Path, rendered: tuple[Path, Path, list]
) -> None:
    sheets, _, made = rendered
    first = made[0]
    with Catalog(small_catalog) as catalog:
        exemplars = catalog.exemplars(catalog.unit_id(catalog.run().run_id, f"{first.layer}:{first.unit}"))
        thumbnails = [catalog.image(int(i)).thumbnail for i in exemplars.image_id]
    drawn = np.asarray(Image.open(sheets / first.name).convert("RGB")).astype(int)
    gap = sheets_script.GAP
    checked = 0
    for rank, (row, thumbnail) in enumerate(zip(exemplars.itertuples(), thumbnails)):
        r, c = divmod(rank, 4)
        tile = drawn[r * (TILE + gap): r * (TILE + gap) + TILE, c * (TILE + gap): c * (TILE + gap) + TILE]
        original = np.asarray(thumbnail_at(thumbnail, TILE)).astype(int)
        region = mask(row.map, float(row.threshold), TILE)
        assert (tile[region] == original[region]).all()
        outside = ~region
        assert np.abs(tile[outside] - original[outside] * 0.25).max() <= 1
        bright = outside & (original.min(axis=-1) > 40)  # where dimming visibly changes the pixel
        assert (tile[bright] < original[bright]).all()
        checked += int(region.any() and outside.any())
    assert checked > 0  # at least one tile shows both a region and a dimmed rest
    if len(exemplars) < 8:  # k=5 in the fixture: the remaining cells stay white
        assert (drawn[TILE + gap:, 3 * (TILE + gap):] == 255).all()


def test_the_key_and_sample_name_the_drawn_units(small_catalog: Path, rendered: tuple[Path, Path, list]) -> None:
    _, keys, made = rendered
    key = pd.read_csv(keys / "key.csv")
    sample = json.loads((keys / "sample.json").read_text())
    assert list(key.columns) == ["sheet", "model", "layer", "unit"]
    assert list(key.sheet) == [s.name for s in made] and set(key.model) == {"efficientnet-lite0"}
    units = [f"{layer}:{u}" for layer, u in zip(key.layer, key.unit)]
    assert sorted(units) == sorted(sample["units"]) and not set(units) & EXCLUDED
    with Catalog(small_catalog) as catalog:
        n_units = catalog.layers(catalog.run().run_id).set_index("layer").n_units
    layer_sizes = {"blocks.2": int(n_units["blocks.2"]), "blocks.6": int(n_units["blocks.6"])}
    expected = sheets_script.draw_units(layer_sizes, 3, 7, EXCLUDED)
    assert sample["units"] == [f"{layer}:{u}" for layer, u in expected]
    assert units != sample["units"] or len(units) < 3  # sheets are numbered in a shuffled order
    assert all(sample["meta"][u]["n_ex"] == 5 for u in units)


def test_draw_units_reproduces_a_seed_and_honours_exclusions() -> None:
    layers = {"a": 80, "b": 112}
    assert sheets_script.draw_units(layers, 15, 1) == sheets_script.draw_units(layers, 15, 1)
    rng = np.random.default_rng(1)
    assert [u for _, u in sheets_script.draw_units(layers, 15, 1)[:15]] == sorted(rng.choice(80, 15, replace=False))
    with pytest.raises(UserError, match="fewer than"):
        sheets_script.draw_units({"a": 4}, 3, 0, {"a:0", "a:1"})


def test_the_key_may_not_sit_inside_the_sheets_folder(small_catalog: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="outside the sheets folder"):
        sheets_script.render_sheets(small_catalog, ["blocks.2"], 1, 0, tmp_path, tmp_path / "key")


def test_join_writes_the_shared_format(rendered: tuple[Path, Path, list], tmp_path: Path) -> None:
    _, keys, made = rendered
    answers = pd.DataFrame(
        {
            "sheet": [s.name for s in made[:4]],
            "annotation": ["dog faces", "blue sky", "thin vertical edges", "top left corner"],
            "confidence": [3, 2, 1, 2],
            "one_concept": ["yes", "yes", "mixed", "unclear"],
            "kind": ["part", "colour", "edge/shape", "position"],
        }
    )
    answers.to_csv(tmp_path / "answers.csv", index=False)
    target = sheets_script.join_answers(tmp_path / "answers.csv", keys, tmp_path / "out")
    assert target == tmp_path / "out" / "efficientnet-lite0"
    written = pd.read_csv(target / "annotations.csv")
    kinds = pd.read_csv(target / "kinds.csv")
    sample = json.loads((target / "sample.json").read_text())
    assert list(written.columns) == ["model", "layer", "unit", "annotation", "confidence", "one_concept"]
    assert list(kinds.columns) == ["layer", "unit", "kind"]
    assert [f"{layer}:{u}" for layer, u in zip(written.layer, written.unit)] == sample["units"]
    by_sheet = {s.name: f"{s.layer}:{s.unit}" for s in made}
    expected = {by_sheet[s]: a for s, a in zip(answers.sheet, answers.annotation)}
    assert dict(zip(sample["units"], written.annotation)) == expected
    assert set(kinds.kind) == {"parts", "colours", "edges/shapes", "positions"}
    with pytest.raises(UserError, match="exists"):
        sheets_script.join_answers(tmp_path / "answers.csv", keys, tmp_path / "out")


def test_join_refuses_bad_answers(rendered: tuple[Path, Path, list], tmp_path: Path) -> None:
    _, keys, made = rendered
    bad = tmp_path / "bad.csv"
    bad.write_text(f"sheet,annotation,confidence,one_concept,kind\n{made[0].name},faces,4,yes,face\n")
    with pytest.raises(UserError, match="confidence '4'.*kind 'face'"):
        sheets_script.join_answers(bad, keys, tmp_path / "out")
    bad.write_text("sheet,annotation,confidence,one_concept,kind\nsheet-999.png,faces,2,yes,part\n")
    with pytest.raises(UserError, match="does not have: sheet-999.png"):
        sheets_script.join_answers(bad, keys, tmp_path / "out")
