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


def test_annotations_are_scored_beside_baselines_and_the_oracle_candidate(
    described_catalog: Path, tmp_path: Path, capsys
) -> None:
    """Wiring check with known answers: each annotation is the unit's second-ranked candidate, so
    the oracle pick finds it exactly (cosine 1) and the chosen description does not."""
    from milan_core.catalog import Catalog

    with Catalog(described_catalog) as catalog:
        run = catalog.run()
        layers = catalog.run_descriptions(run.run_id, "evidence", ["blocks.2", "blocks.6"])
        picked = layers.groupby("layer").head(3)
        candidates = catalog.unit_candidates(picked.unit_id.tolist(), "evidence")
    second = candidates[candidates["rank"] == 1].set_index("unit_id").text
    rows = [f"{run.model},{r.layer},{r.unit},{second[r.unit_id]},2,yes" for r in picked.itertuples()]
    rows.append("some-other-model,blocks.2,0,ignored,1,yes")
    annotations = tmp_path / "annotations.csv"
    annotations.write_text("model,layer,unit,annotation,confidence,one_concept\n" + "\n".join(rows) + "\n")
    out = tmp_path / "annotations-scores.csv"
    assert main(["evaluate", "annotations", "--catalog", str(described_catalog), "--annotations", str(annotations),
                 "--csv", str(out)]) == 0
    scores = _rows(out)
    assert {m for m, _ in scores} == {"evidence", *BASELINES, "oracle_candidate"}
    assert {k for _, k in scores} == {"units_scored", "similarity", "share_layer_max", "similarity:blocks.2",
                                      "similarity:blocks.6"}
    assert scores["evidence", "units_scored"] == 6.0
    assert scores["oracle_candidate", "similarity"] == pytest.approx(1.0, abs=1e-4)
    assert scores["evidence", "similarity"] < 0.99 and scores["constant", "share_layer_max"] == 1.0
    shares = layers.groupby("layer").description.value_counts(normalize=True).max()
    assert scores["evidence", "share_layer_max"] == pytest.approx(shares)
    assert "oracle_candidate" in capsys.readouterr().out


def test_annotations_of_another_model_are_one_line_of_error(described_catalog: Path, tmp_path: Path, capsys) -> None:
    annotations = tmp_path / "other.csv"
    annotations.write_text("model,layer,unit,annotation\nresnet18,layer1,0,dog faces\n")
    arguments = ["evaluate", "annotations", "--catalog", str(described_catalog), "--annotations", str(annotations)]
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "resnet18" in err and err.count("\n") == 1
