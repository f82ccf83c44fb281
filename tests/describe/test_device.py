"""``describe --device``: the eye and the detectors run where they are told; a missing device is one
line, the catalog untouched (this machine has no GPU: the CUDA paths are their errors and notes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from milan_core.catalog import Catalog
from milan_core.cli import main
from milan_core.describe.detectors import providers
from milan_core.describe.eye import load_eye
from milan_core.describe.registry import make_describer

DESCRIPTIONS = "SELECT unit_id, description, evidence_type, round(score, 4) AS score FROM descriptions ORDER BY unit_id"


def test_describe_on_the_cpu_gives_the_default_descriptions(described_catalog: Path, small_catalog: Path,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "cpu.duckdb"
    shutil.copy(small_catalog, path)
    assert main(["describe", "--catalog", str(path), "--device", "cpu"]) == 0
    with Catalog(described_catalog) as default, Catalog(path) as on_cpu:
        expected = default.query(DESCRIPTIONS)
        assert len(expected) == len(default.units())
        assert on_cpu.query(DESCRIPTIONS).equals(expected)


def test_describe_on_a_missing_cuda_device_is_one_line_and_leaves_the_catalog(small_catalog: Path, tmp_path: Path,
                                                                              capsys) -> None:
    path = tmp_path / "cuda.duckdb"
    shutil.copy(small_catalog, path)
    before = path.read_bytes()
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = f"cuda:{count}" if count else "cuda"  # one past the last device, or CUDA itself
    assert main(["describe", "--catalog", str(path), "--device", missing]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --device {missing}: ") and "\n" not in err
    assert ("torch sees no CUDA device" in err) if not count else (f"has {count} CUDA device(s)" in err)
    assert path.read_bytes() == before


def test_the_describer_puts_its_eye_on_its_device() -> None:
    describer = make_describer("evidence", torch.device("cpu"))
    assert describer.device == torch.device("cpu")
    eye = load_eye("efficientnet-lite1", torch.device("meta"))  # a real device with no storage
    assert {p.device.type for p in eye.module.parameters()} == {"meta"}


def test_detectors_use_cuda_only_where_onnxruntime_has_it(capsys) -> None:
    import onnxruntime

    assert providers(None) == providers(torch.device("cpu")) == ("CPUExecutionProvider",)
    on_cuda = providers(torch.device("cuda"))
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert on_cuda == ("CUDAExecutionProvider", "CPUExecutionProvider")
    else:
        assert on_cuda == ("CPUExecutionProvider",)
        assert "no CUDA provider" in capsys.readouterr().err
