"""The evaluation harness on small real inputs: baselines always in the table, CSV rows."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from milan_core.cli import main
from milan_core.describe.evaluate import BASELINES, baselines


def _rows(path: Path) -> dict[tuple[str, str], float]:
    with path.open() as handle:
        return {(r["method"], r["metric"]): float(r["value"]) for r in csv.DictReader(handle)}


def test_baselines() -> None:
    made = baselines(["a", "b", "b", "c"])
    assert made["constant"] == ["depictions"] * 4 and made["most_frequent"] == ["b"] * 4
    assert all(made["random_unit"][i] in {"a", "b", "c"} for i in range(4))


def test_final_layer_on_the_small_catalog(described_catalog: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    shutil.copy(described_catalog, path)
    out = tmp_path / "final.csv"
    assert main(["evaluate", "final-layer", "--catalog", str(path), "--csv", str(out)]) == 0
    rows = _rows(out)
    assert {m for m, _ in rows} == {"evidence", *BASELINES}
    assert {k for _, k in rows} == {"top1", "similarity"}
    assert rows["constant", "top1"] == 0.0
    # only 6 of the 1000 classes are in the probe set, so top-1 over all units is small but real
    assert rows["evidence", "top1"] > rows["most_frequent", "top1"]
    assert rows["evidence", "similarity"] > rows["constant", "similarity"]


@pytest.mark.shared
def test_segmentation_on_a_few_labelled_images(coco_subset: tuple[Path, Path, Path], tmp_path: Path) -> None:
    images, masks, classes = coco_subset
    out = tmp_path / "seg.csv"
    code = main(["evaluate", "segmentation", "--images", str(images), "--masks", str(masks),
                 "--classes", str(classes), "--layers", "blocks.6", "--k", "3", "--csv", str(out)])
    assert code == 0
    rows = _rows(out)
    assert rows["evidence", "units_scored"] > 0
    assert {m for m, _ in rows} == {"evidence", *BASELINES}
    assert 0.0 <= rows["evidence", "concept_match"] <= 1.0
