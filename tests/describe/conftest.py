"""Fixtures of the description stage: a described copy of the shared small catalog (made once)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from milan_core.cli import main


@pytest.fixture(scope="session")
def described_catalog(small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small_catalog`` copied and described by the default describer through the command line."""
    path = tmp_path_factory.mktemp("described") / "catalog.duckdb"
    shutil.copy(small_catalog, path)
    assert main(["describe", "--catalog", str(path)]) == 0
    return path


SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _shared(name: str) -> Path:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"the shared data {name} is missing at {folder}")
    return folder


@pytest.fixture(scope="session")
def imagenet_samples() -> Path:
    """The 1000 shared ImageNet photos (one per class)."""
    return _shared("imagenet-samples")


@pytest.fixture(scope="session")
def coco() -> Path:
    """The shared COCO128 photos with class-index masks."""
    return _shared("coco128-seg")


@pytest.fixture(scope="session")
def coco_subset(coco: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six COCO photos and their masks in folders of their own: (images, masks)."""
    root = tmp_path_factory.mktemp("coco")
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    for mask in sorted((coco / "masks").glob("*.png"))[:6]:
        shutil.copy(mask, masks / mask.name)
        shutil.copy(coco / "images" / f"{mask.stem}.jpg", images / f"{mask.stem}.jpg")
    return images, masks
