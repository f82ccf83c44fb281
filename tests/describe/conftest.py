"""Fixtures of the description stage: a described copy of the shared small catalog (made once)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from probe_data import shared_folder

from milan_core.cli import main


@pytest.fixture(scope="session")
def described_catalog(small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small_catalog`` copied and described by the default describer through the command line."""
    path = tmp_path_factory.mktemp("described") / "catalog.duckdb"
    shutil.copy(small_catalog, path)
    assert main(["describe", "--catalog", str(path)]) == 0
    return path


@pytest.fixture(scope="session")
def coco() -> Path:
    """The shared COCO128 photos with class-index masks (``shared`` tests only)."""
    return shared_folder("coco128-seg")


@pytest.fixture(scope="session")
def coco_subset(coco: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Six COCO photos and their masks in folders of their own: (images, masks, classes.yaml)."""
    root = tmp_path_factory.mktemp("coco")
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    for mask in sorted((coco / "masks").glob("*.png"))[:6]:
        shutil.copy(mask, masks / mask.name)
        shutil.copy(coco / "images" / f"{mask.stem}.jpg", images / f"{mask.stem}.jpg")
    return images, masks, coco / "classes.yaml"
