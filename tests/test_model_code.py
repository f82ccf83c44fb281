"""No code runs from a file: a catalog's or an edit file's ``module:callable`` model is rebuilt only
with ``--trust-model-code``; ``--model`` refuses standard-library modules before importing them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from milan_core.applications.editing import EDIT_FORMAT, EDIT_VERSION, load_edited
from milan_core.catalog import Catalog
from milan_core.cli import main
from milan_core.errors import UserError
from milan_core.models import load_model, load_recorded_model, trusting_model_code

MARKER = "milan_marker_model"  # a module of the test's own: it leaves a file behind when imported


@pytest.fixture()
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module ``milan_marker_model`` on sys.path whose import writes ``imported.txt``."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / f"{MARKER}.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(tmp_path / 'imported.txt')!r}).write_text('imported')\n"
        "import torch\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, MARKER, raising=False)
    yield tmp_path / "imported.txt"
    sys.modules.pop(MARKER, None)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip() and not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    return lines[0]


def evil_copy(small_catalog: Path, tmp_path: Path, model: str) -> Path:
    """The small catalog with its run's model replaced by ``model`` (as a hostile sender would)."""
    path = tmp_path / "evil.duckdb"
    shutil.copy(small_catalog, path)
    with Catalog(path, writable=True) as catalog:
        catalog.con.execute("UPDATE runs SET model = ?", [model])
    return path


@pytest.mark.parametrize("spec", ["os:system", "this:s", "faulthandler:dump_traceback", "builtins:print"])
def test_a_standard_library_model_spec_is_refused_before_it_is_imported(
    spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = spec.partition(":")[0]
    was_loaded = module in sys.modules
    assert main(["layers", "--model", spec]) == 2
    line = one_error_line(capsys)
    assert "standard-library module" in line and spec in line
    assert "The Zen of Python" not in capsys.readouterr().out
    if not was_loaded:
        assert module not in sys.modules  # refused by name, never imported


@pytest.mark.parametrize(("spec", "phrase"), [
    ("no_such_package_xyz:build", "no module named 'no_such_package_xyz'"),
    ("torchvision.models:no_such_factory", "has no attribute 'no_such_factory'"),
    ("torchvision.models:ResNet", "must build the model with no arguments"),
    ("torch:get_default_dtype", "returned dtype, not a torch.nn.Module"),
    ("torch.nn:Identity()", "is not package.module:callable"),
])
def test_a_model_spec_that_builds_no_module_is_one_line(spec: str, phrase: str, capsys) -> None:
    assert main(["layers", "--model", spec]) == 2
    assert phrase in one_error_line(capsys)


def test_a_typed_model_spec_is_imported_and_called(marker: Path, capsys) -> None:
    assert main(["layers", "--model", f"{MARKER}:build"]) == 0
    assert marker.read_text() == "imported" and "0" in capsys.readouterr().out


def assert_refused_without_import(argv: list[str], marker: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command fails in one line asking for --trust-model-code, and the named module never loaded."""
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert "--trust-model-code" in line and f"{MARKER}:build" in line, line
    assert not marker.exists() and MARKER not in sys.modules


@pytest.mark.parametrize("command", [["describe"], ["evaluate", "final-layer"]])
def test_a_catalog_naming_code_is_read_without_importing_it(
    command: list[str], small_catalog: Path, marker: Path, tmp_path: Path, capsys
) -> None:
    path = evil_copy(small_catalog, tmp_path, f"{MARKER}:build")
    assert_refused_without_import([*command, "--catalog", str(path)], marker, capsys)


def test_faulthandler_in_a_catalog_is_never_called(small_catalog: Path, tmp_path: Path, capsys) -> None:
    path = evil_copy(small_catalog, tmp_path, "faulthandler:dump_traceback")
    assert main(["describe", "--catalog", str(path)]) == 2
    assert "--trust-model-code" in one_error_line(capsys)
    # trusting the file does not make a standard-library function a model
    assert main(["describe", "--catalog", str(path), "--trust-model-code"]) == 2
    line = one_error_line(capsys)
    assert "standard-library module 'faulthandler'" in line and "Stack" not in line


def test_trusted_code_from_a_catalog_is_rebuilt(marker: Path) -> None:
    with pytest.raises(UserError, match="--trust-model-code"):
        load_recorded_model(f"{MARKER}:build", None)
    assert not marker.exists()
    with trusting_model_code():
        loaded = load_recorded_model(f"{MARKER}:build", None)
    assert marker.exists() and isinstance(loaded.module, torch.nn.Sequential)
    assert load_recorded_model("efficientnet-lite0", None).name == "efficientnet-lite0"  # known names: no opt-in


def test_the_flag_is_on_every_command_that_reloads_a_recorded_model() -> None:
    from milan_core.cli import build_parser

    parser = build_parser()
    segmentation = ["evaluate", "segmentation", "--masks", "m", "--classes", "c"]
    edit = ["edit", "--query", "q", "--out", "o"]
    for argv in (["describe"], ["evaluate", "final-layer"], segmentation, ["ablate"], edit):
        assert parser.parse_args([*argv, "--trust-model-code"]).trust_model_code is True


def test_an_edit_file_naming_code_is_read_without_importing_it(marker: Path, tmp_path: Path) -> None:
    state = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).state_dict()
    for model in (f"{MARKER}:build", "faulthandler:dump_traceback"):
        path = tmp_path / "evil.pt"
        torch.save({"format": EDIT_FORMAT, "version": EDIT_VERSION, "model": model, "state_dict": state,
                    "ablated": {"0": [1]}, "run_id": "r", "query": "q"}, path)
        with pytest.raises(UserError, match="trust_model_code=True"):
            load_edited(path)
        assert not marker.exists() and MARKER not in sys.modules
    with pytest.raises(UserError, match="standard-library module 'faulthandler'"):
        load_edited(path, trust_model_code=True)
    torch.save({"format": EDIT_FORMAT, "version": EDIT_VERSION, "model": f"{MARKER}:build", "state_dict": state,
                "ablated": {"0": [1]}, "run_id": "r", "query": "q"}, path)
    edited = load_edited(path, trust_model_code=True)
    with torch.inference_mode():
        out = edited.loaded.module(torch.rand(1, 3, 8, 8))
    assert marker.exists() and float(out[0, 1].abs().max()) == 0.0 and float(out[0, 0].abs().max()) > 0.0


def test_a_non_checkpoint_weights_file_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "weights.pt"
    junk.write_bytes(b"PK\x03\x04 not a checkpoint at all" * 10)
    with pytest.raises(UserError) as error:
        load_model("resnet18", junk)
    assert "weights_only" not in str(error.value) and "\n" not in str(error.value)
    assert "is not a PyTorch checkpoint" in str(error.value)
    junk.write_bytes(__import__("pickle").dumps({"code": print}, protocol=2))  # a pickle naming a function
    with pytest.raises(UserError, match="holds objects other than tensors") as error:
        load_model("resnet18", junk)
    assert "weights_only" not in str(error.value)
