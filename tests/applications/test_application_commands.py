"""The audit, ablate and edit commands end to end, in-process, on the described fixture catalog."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_model_code import MARKER, assert_refused_without_import
from test_model_code import marker as marker  # a fixture, used by name

from milan_core.applications.editing import load_edited
from milan_core.applications.evaluation import AblationEvaluator, LabelledProbe
from milan_core.catalog import Catalog
from milan_core.cli import main


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_logit_run(path: Path, run_id: str = "logits-copy") -> None:
    """A second run: the first run's classifier layer and its descriptions, minus the dog logits' ones."""
    with Catalog(path, writable=True) as catalog, catalog.transaction() as con:
        con.execute("INSERT INTO runs SELECT ? AS run_id, * EXCLUDE (run_id) FROM runs", [run_id])
        con.execute("INSERT INTO layers SELECT ?, * EXCLUDE (run_id) FROM layers WHERE layer = 'classifier'", [run_id])
        offset = con.execute("SELECT max(unit_id) FROM units").fetchone()[0]
        con.execute(
            "INSERT INTO units SELECT unit_id + ?, ?, * EXCLUDE (unit_id, run_id) FROM units "
            "WHERE layer = 'classifier'",
            [offset, run_id],
        )
        con.execute(
            "INSERT INTO descriptions SELECT d.unit_id + ?, d.* EXCLUDE (unit_id) FROM descriptions d "
            "JOIN units u USING (unit_id) WHERE u.layer = 'classifier' AND u.unit NOT BETWEEN 151 AND 268",
            [offset],
        )


def test_audit_counts_matches_per_layer_for_each_run_side_by_side(fresh_catalog: Path, capsys) -> None:
    add_logit_run(fresh_catalog)
    assert main(["audit", "--catalog", str(fresh_catalog), "--query", "dog"]) == 0
    out = capsys.readouterr().out
    assert "cosine similarity >= 0.5" in out and "logits-copy" in out  # the default threshold
    with Catalog(fresh_catalog) as catalog:
        stored = catalog.query(
            "SELECT u.run_id, u.layer, u.unit FROM audit_units a JOIN units u USING (unit_id)"
        )
        first = catalog.runs().run_id.iloc[0]
        says_dog = catalog.query(
            "SELECT u.unit FROM units u JOIN descriptions d USING (unit_id) WHERE u.run_id = ? "
            "AND u.layer = 'classifier' AND regexp_matches(d.description, '(?i)\\bdog')", [first]
        )
    per_run = stored[stored.layer == "classifier"].groupby("run_id").size()
    assert per_run[first] > per_run["logits-copy"]  # the copy lost its dog logits' descriptions
    found = set(stored[(stored.run_id == first) & (stored.layer == "classifier")].unit)
    assert len(says_dog) >= 10 and set(says_dog.unit) <= found  # every keyword hit is counted
    assert f"{per_run[first]}/1000" in out


def test_audit_of_a_query_matching_nothing_counts_zero_per_layer(fresh_catalog: Path, capsys) -> None:
    """Zero face units is an answer (MILAN's audit), printed as a table, not an error."""
    assert main(["audit", "--catalog", str(fresh_catalog), "--query", "qwxzv"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "0 matching unit(s)" in captured.out
    assert "0/1000 (0.0%)" in captured.out and "no unit has a description matching 'qwxzv'" in captured.out


def test_ablate_stores_curves_and_checks_and_writes_the_csv(ablation) -> None:  # conftest.AblationResult
    assert "random" in ablation.printed and "cat" in ablation.printed
    written = pd.read_csv(ablation.csv)
    with Catalog(ablation.catalog) as catalog:
        stored = catalog.query("SELECT * FROM ablation_curves ORDER BY curve, seed, step")
        checks = catalog.query("SELECT * FROM ablation_checks")
    assert len(written) == len(stored) and set(stored.curve) == {"animal", "random"}
    assert stored[stored.curve == "random"].seed.nunique() == 5
    assert checks.concept.tolist() == ["cat"] and checks.concept_after.iloc[0] < checks.concept_before.iloc[0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--run", "nope"], "unknown run 'nope'"),
        (["--images", "UNLABELLED"], "no label"),
        (["--order", "smell"], "unknown order smell"),
        (["--concepts", "qwxzv"], "no noun"),
    ],
)
def test_ablate_refuses_bad_input_in_one_line_and_writes_nothing(
    fresh_catalog: Path, cat_probe: Path, unlabelled_probe: Path, tmp_path: Path, capsys,
    arguments: list[str], message: str,
) -> None:
    arguments = [str(unlabelled_probe) if a == "UNLABELLED" else a for a in arguments]
    csv = tmp_path / "curves.csv"
    before = digest(fresh_catalog)
    base = ["ablate", "--catalog", str(fresh_catalog), "--layers", "classifier", "--csv", str(csv)]
    if "--images" not in arguments:
        base += ["--images", str(cat_probe)]
    assert main(base + arguments) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error:") and err.count("\n") == 1
    assert digest(fresh_catalog) == before and list(tmp_path.iterdir()) == [fresh_catalog]


def test_ablate_needs_descriptions(small_catalog: Path, cat_probe: Path, tmp_path: Path, capsys) -> None:
    assert main(["ablate", "--catalog", str(small_catalog), "--images", str(cat_probe),
                 "--csv", str(tmp_path / "c.csv")]) == 2
    assert "no descriptions" in capsys.readouterr().err


def test_edit_switches_off_matching_units_and_the_saved_model_reloads_edited(
    fresh_catalog: Path, cat_probe: Path, cat_labelled: LabelledProbe, cat_pixels, lite0, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "edited.pt"
    assert main(["edit", "--catalog", str(fresh_catalog), "--query", "cat", "--images", str(cat_probe),
                 "--layers", "blocks.6,classifier", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with Catalog(fresh_catalog) as catalog:
        edit = catalog.query("SELECT * FROM edits").iloc[0]
    assert edit.accuracy_after < edit.accuracy_before  # the cat photos lost their units
    assert f"{100 * edit.accuracy_before:.1f}% before" in printed
    edited = load_edited(out)
    assert edited.query == "cat" and sorted(edited.ablated) == ["blocks.6", "classifier"]
    assert sorted(f"{layer}:{u}" for layer, us in edited.ablated.items() for u in us) == sorted(edit.units)
    with torch.inference_mode():
        right = (edited.loaded.module(cat_pixels).argmax(-1) == cat_labelled.targets).float().mean()
    assert float(right) == pytest.approx(edit.accuracy_after)
    expected = AblationEvaluator(lite0, cat_labelled, list(edited.ablated)).accuracy(edited.ablated)
    assert float(right) == pytest.approx(expected)
    edited.release()
    with torch.inference_mode():
        restored = (edited.loaded.module(cat_pixels).argmax(-1) == cat_labelled.targets).float().mean()
    assert float(restored) == pytest.approx(edit.accuracy_before)


def test_edit_with_an_unknown_run_writes_no_model(fresh_catalog: Path, cat_probe: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "edited.pt"
    assert main(["edit", "--catalog", str(fresh_catalog), "--run", "nope", "--query", "dog",
                 "--images", str(cat_probe), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown run")
    assert list(tmp_path.iterdir()) == [fresh_catalog]


@pytest.mark.parametrize("command", [["ablate", "--order", "animal", "--layers", "classifier", "--concepts", "cat"],
                                     ["edit", "--query", "cat", "--out", "OUT"]])
def test_a_catalog_naming_code_is_not_imported_by_ablate_or_edit(
    command: list[str], fresh_catalog: Path, cat_probe: Path, marker: Path, tmp_path: Path, capsys
) -> None:
    with Catalog(fresh_catalog, writable=True) as catalog:
        catalog.con.execute("UPDATE runs SET model = ?", [f"{MARKER}:build"])
    argv = [str(tmp_path / "edited.pt") if a == "OUT" else a for a in command]
    assert_refused_without_import([*argv, "--images", str(cat_probe), "--catalog", str(fresh_catalog)], marker, capsys)
    assert not (tmp_path / "edited.pt").exists()
