"""Shared fixtures: small real inputs built once per session (photos, models, a DuckDB catalog)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from milan_core.config import DissectConfig
from milan_core.dissect import dissect
from milan_core.models import LoadedModel, load_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGENET_SAMPLES = SHARED / "imagenet-samples"
COCO = SHARED / "coco128-seg"


def imagenet_sample_paths(count: int) -> list[Path]:
    """The first ``count`` ImageNet sample photos, spread over the 1000 classes."""
    paths = sorted(IMAGENET_SAMPLES.glob("*.JPEG"))
    if not paths:
        pytest.skip(f"the shared probe photos are missing at {IMAGENET_SAMPLES}")
    step = max(1, len(paths) // count)
    return paths[::step][:count]


@pytest.fixture(scope="session")
def imagenet_samples() -> Path:
    """The 1000 shared ImageNet sample photos (read-only)."""
    imagenet_sample_paths(1)
    return IMAGENET_SAMPLES


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 real ImageNet photos in a folder of their own (tests may copy it and add bad files)."""
    folder = tmp_path_factory.mktemp("probe")
    for path in imagenet_sample_paths(24):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="session")
def lite0() -> LoadedModel:
    """The embedded EfficientNet-Lite0 with its ImageNet weights."""
    return load_model("efficientnet-lite0")


@pytest.fixture(scope="session")
def small_config(probe_dir: Path) -> DissectConfig:
    return DissectConfig(
        images=str(probe_dir), layers=("blocks.2", "blocks.6", "classifier"), k=5, batch_size=8, workers=0
    )


@pytest.fixture(scope="session")
def small_catalog(tmp_path_factory: pytest.TempPathFactory, small_config: DissectConfig) -> Path:
    """A real catalog: EfficientNet-Lite0 dissected over the 24 probe photos (read it, don't write it)."""
    path = tmp_path_factory.mktemp("catalog") / "catalog.duckdb"
    dissect(small_config, path)
    return path
