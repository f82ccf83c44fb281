"""Shared fixtures: small real inputs built once per session (photos, models, a DuckDB catalog).

The suite brings its own probe set (``tests/data``, built from scikit-image's photos by
``tests/data/build_probe.py``), so a fresh clone anywhere tests everything. Checks on the real data
beside the project (``../shared/data``: 1000 ImageNet photos, coco128-seg) are marked
``@pytest.mark.shared``: they run where that folder exists (as in CI) and skip elsewhere.

When ``CI`` is set, a test that skips for any other reason fails: a green CI run means every test
it expects to run ran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ci_skips import pytest_collection_modifyitems, pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401
from probe_data import PROBE, shared_folder

from milan_core.config import DissectConfig
from milan_core.dissect import dissect
from milan_core.models import LoadedModel, load_model


def imagenet_sample_paths(count: int) -> list[Path]:
    """``count`` of the 1000 shared ImageNet sample photos, spread over the classes."""
    paths = sorted(shared_folder("imagenet-samples").glob("*.JPEG"))
    step = max(1, len(paths) // count)
    return paths[::step][:count]


@pytest.fixture(scope="session")
def imagenet_samples() -> Path:
    """The 1000 shared ImageNet sample photos (read-only; ``shared`` tests only)."""
    return shared_folder("imagenet-samples")


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's 36 photos in a folder of their own (tests may copy it and add bad files)."""
    folder = tmp_path_factory.mktemp("probe")
    for path in sorted(PROBE.glob("*.jpg")):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="session")
def many_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """432 photos (the probe set twelve times over, under distinct names): a pass long enough to interrupt."""
    folder = tmp_path_factory.mktemp("many")
    for copy in range(12):
        for path in sorted(PROBE.glob("*.jpg")):
            shutil.copy(path, folder / f"{path.stem}-{copy:02d}.jpg")
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
    """A real catalog: EfficientNet-Lite0 dissected over the 36 probe photos (read it, don't write it)."""
    path = tmp_path_factory.mktemp("catalog") / "catalog.duckdb"
    dissect(small_config, path)
    return path
