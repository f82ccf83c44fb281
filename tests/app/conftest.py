"""Catalogs for the browser's tests: the real dissected catalog plus descriptions (see described.py)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from described import add_descriptions

from milan_core.catalog import Catalog
from milan_core.config import DissectConfig
from milan_core.dissect import dissect


@pytest.fixture(scope="session")
def described_catalog(small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dissected small catalog with descriptions and candidates (read it, don't write it)."""
    path = tmp_path_factory.mktemp("described") / "catalog.duckdb"
    shutil.copy(small_catalog, path)
    add_descriptions(path)
    return path


@pytest.fixture(scope="session")
def two_run_catalog(described_catalog: Path, probe_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The described catalog plus a second run of another model (EfficientNet-Lite1's blocks.6 over
    the same 36 photos), described the same way: two models to compare for one query."""
    path = tmp_path_factory.mktemp("two_runs") / "catalog.duckdb"
    shutil.copy(described_catalog, path)
    config = DissectConfig(model="efficientnet-lite1", images=str(probe_dir), layers=("blocks.6",), k=5, batch_size=8,
                           workers=0)
    dissect(config, path)
    add_descriptions(path, config.resolved_run_id())
    return path


@pytest.fixture(scope="session")
def small_catalog_run(described_catalog: Path) -> str:
    """The id of the fixture catalog's one run."""
    with Catalog(described_catalog) as catalog:
        return catalog.run().run_id


@pytest.fixture(scope="session")
def empty_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog file with the schema but no runs."""
    path = tmp_path_factory.mktemp("empty") / "catalog.duckdb"
    Catalog(path, writable=True).close()
    return path


@pytest.fixture(scope="session")
def newer_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog whose schema version is newer than this code's."""
    path = tmp_path_factory.mktemp("newer") / "catalog.duckdb"
    with Catalog(path, writable=True) as catalog:
        catalog.con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    return path


@pytest.fixture(scope="session")
def file_hash() -> Callable[[Path], str]:
    """A file's SHA-256, to prove that reading a catalog never changes it."""
    return lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()
