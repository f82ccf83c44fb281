"""The model's runtimes: ONNX Runtime and PyTorch give the same catalog; the export is cached,
checked and, when it cannot be made, replaced by PyTorch with one line saying why."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from milan_core.catalog import Catalog
from milan_core.cli import main
from milan_core.config import DissectConfig
from milan_core.dissect import dissect
from milan_core.errors import UserError
from milan_core.models import LoadedModel, Preprocessing, load_model
from milan_core.runtime import graph_path, layer_forward

EXEMPLARS = ("SELECT u.layer, u.unit, u.threshold, u.act_min, u.act_max, e.rank, e.activation, i.sha256 "
             "FROM units u JOIN exemplars e USING (unit_id) JOIN images i USING (image_id) "
             "ORDER BY u.layer, u.unit, e.rank")
DESCRIPTIONS = ("SELECT u.layer, u.unit, d.description FROM descriptions d JOIN units u USING (unit_id) "
                "ORDER BY u.layer, u.unit")


@pytest.fixture()
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache, so a test sees the export happen (and the shared cache is not touched)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "milan_core" / "onnx"


def _described(config: DissectConfig, path: Path, backend: str) -> Path:
    dissect(config, path, backend=backend)
    assert main(["describe", "--catalog", str(path)]) == 0
    return path


def test_both_backends_give_the_same_catalog_and_descriptions(small_config: DissectConfig, tmp_path: Path) -> None:
    """Real Lite0 on 24 real photos: the same exemplar images per unit (ties aside), thresholds
    within one histogram bin, the same descriptions; each run records its backend."""
    torch_run = _described(small_config, tmp_path / "torch.duckdb", "torch")
    onnx_run = _described(small_config, tmp_path / "onnx.duckdb", "onnxruntime")
    with Catalog(torch_run) as first, Catalog(onnx_run) as second:
        assert first.run().config["backend"] == "torch" and second.run().config["backend"] == "onnxruntime"
        assert first.run().run_id == second.run().run_id  # the backend is not part of the run id
        a, b = first.query(EXEMPLARS), second.query(EXEMPLARS)
        assert len(a) == len(b) == 1360 * 5
        np.testing.assert_allclose(a.activation, b.activation, rtol=1e-4, atol=1e-4)
        tied = np.isclose(a.activation, b.activation.shift(1), rtol=1e-4) | np.isclose(
            a.activation, b.activation.shift(-1), rtol=1e-4)
        assert ((a.sha256 == b.sha256) | tied).all()
        assert (a.sha256 == b.sha256).mean() > 0.99
        bin_width = (a.act_max - a.act_min) / 2048
        assert ((a.threshold - b.threshold).abs() <= bin_width + 1e-6).all()
        assert first.query(DESCRIPTIONS).equals(second.query(DESCRIPTIONS))


def test_the_graph_is_exported_once_and_a_changed_model_gets_another(
    own_cache: Path, lite0: LoadedModel, probe_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layers = ("blocks.6",)
    pixels = torch.stack([lite0.preprocessing(_photo(probe_dir, i)) for i in range(2)])
    with layer_forward(lite0, layers, "onnxruntime") as forward:
        assert forward.backend == "onnxruntime"
        first = forward(pixels)["blocks.6"]
    assert "exporting efficientnet-lite0" in capsys.readouterr().err
    assert len(list(own_cache.glob("*.onnx"))) == 1
    with layer_forward(lite0, layers, "onnxruntime") as forward:
        assert torch.equal(forward(pixels)["blocks.6"], first)
    assert "exporting" not in capsys.readouterr().err

    changed = load_model("efficientnet-lite0")
    with torch.no_grad():
        changed.module.blocks[6][0].conv_pwl.weight.mul_(2)  # same architecture, other weights
    assert graph_path(changed, layers) != graph_path(lite0, layers)
    assert graph_path(lite0, ("blocks.6", "blocks.2")) != graph_path(lite0, layers)
    graph_path(changed, layers).write_bytes(b"not a graph")  # a damaged cache file is made again
    with layer_forward(changed, layers, "onnxruntime") as forward:
        assert forward.backend == "onnxruntime"
        assert not torch.allclose(forward(pixels)["blocks.6"], first)  # its own graph, not the cached one
    assert "exporting" in capsys.readouterr().err
    assert len(list(own_cache.glob("*.onnx"))) == 2


def _photo(folder: Path, index: int):
    from PIL import Image

    return Image.open(sorted(folder.iterdir())[index]).convert("RGB")


class OneConvolution(nn.Module):
    """A convolution (the layer dissected), then a ``head`` that makes the output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=8)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(pixels), pixels)


class Histogrammed(OneConvolution):
    """An operator ONNX does not have (``histc``) after the convolution."""

    def head(self, maps: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.histc(m, bins=5) for m in maps])


class BranchesOnItsInput(OneConvolution):
    """An output that depends on the input's values: a traced graph keeps one branch only."""

    def head(self, maps: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        return maps if bool(pixels.abs().sum() == 0) else maps * 3 + 1


def _loaded(module: nn.Module) -> LoadedModel:
    return LoadedModel("custom", module.eval(), Preprocessing(64, 0.875, (0.5,) * 3, (0.25,) * 3), "random")


def test_a_model_that_does_not_export_runs_on_torch_and_says_why(
    own_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loaded = _loaded(Histogrammed())
    pixels = torch.randn(2, 3, 64, 64)
    with layer_forward(loaded, ["conv"], "auto") as forward:
        assert forward.backend == "torch"
        assert forward(pixels)["conv"].shape == (2, 4, 8, 8)
    notes = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert notes[-1] == "note: custom runs on torch, its ONNX export failed (UnsupportedOperatorError: " \
                        "Exporting the operator 'aten::histc' to ONNX opset version 17 is not supported)"
    assert "graph" not in " ".join(notes[1:])  # the exporter's dump of its graph is not shown
    assert not list(own_cache.glob("*"))  # nothing half-written is left


def test_an_export_that_disagrees_with_pytorch_stops_the_job(own_cache: Path) -> None:
    loaded = _loaded(BranchesOnItsInput())  # exported on a blank image: the other branch
    with layer_forward(loaded, ["conv"], "onnxruntime") as forward:
        forward.blank(64)  # sizing the statistics does not check
        with pytest.raises(UserError, match=r"ONNX export of custom differs from PyTorch on logits .* --backend torch"):
            forward(torch.randn(2, 3, 64, 64))


def test_unknown_layers_and_backends_are_the_users_to_fix(lite0: LoadedModel) -> None:
    with pytest.raises(UserError, match="unknown layer"):
        with layer_forward(lite0, ["blocks.99"], "onnxruntime"):
            pass
    with pytest.raises(UserError, match="--backend must be one of"):
        with layer_forward(lite0, ["blocks.6"], "tensorrt"):
            pass


def test_the_command_line_takes_a_backend(probe_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "six"
    images.mkdir()
    for photo in sorted(probe_dir.iterdir())[:6]:
        shutil.copy(photo, images / photo.name)
    out = tmp_path / "cli.duckdb"
    assert main(["dissect", "--images", str(images), "--out", str(out), "--layers", "blocks.6",
                 "--workers", "0", "--backend", "torch"]) == 0
    with Catalog(out) as catalog:
        assert catalog.run().config["backend"] == "torch"
    with pytest.raises(SystemExit):
        main(["dissect", "--backend", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_auto_is_the_cpu_here_and_an_absent_device_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from milan_core.runtime import resolve_device

    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    out = tmp_path / "never.duckdb"
    for device, phrase in (("cuda", "no CUDA device"), ("cuda:1", "no CUDA device"), ("tpu", "must be auto, cpu")):
        assert main(["dissect", "--device", device, "--out", str(out)]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: --device") and phrase in lines[0]
    assert not out.exists()


def test_precision_has_its_own_run_and_runs_on_torch(lite0: LoadedModel) -> None:
    fp32, bf16 = DissectConfig(), DissectConfig(precision="bf16")
    assert fp32.resolved_run_id() == "efficientnet-lite0-cdb3406f"  # as before precision was a choice
    assert bf16.resolved_run_id() != fp32.resolved_run_id()
    with layer_forward(lite0, ["blocks.6"], "auto", precision="bf16") as forward:
        assert forward.backend == "torch"
        maps = forward(torch.zeros(2, 3, 224, 224))["blocks.6"]
        assert maps.dtype == torch.bfloat16  # autocast ran the model in bf16; statistics read it as float
    with pytest.raises(UserError, match="fp32 only"):
        with layer_forward(lite0, ["blocks.6"], "onnxruntime", precision="bf16"):
            pass
