"""Descriptions for the browser's test catalogs: real rows with real MiniLM vectors.

The session's ``small_catalog`` (EfficientNet-Lite0 over the suite's 36 photos) is copied and given description
and candidate rows, embedded with the real packaged MiniLM, so a search for "face" has to find the
face units by keyword and meaning for real. Exemplars, thumbnails and maps are the dissection's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from milan_core.catalog import Catalog
from milan_core.embedding import embed

DESCRIBER = "evidence"

#: Units whose descriptions the tests look for, with (description, evidence type, confidence, score).
NAMED_UNITS: dict[str, tuple[str, str, float, float]] = {
    "blocks.6:17": ("human faces", "object", 0.9, 3.0),
    "blocks.6:42": ("spotted dog faces", "object", 0.6, 2.0),
    "blocks.6:100": ("portraits of people", "object", 0.7, 2.5),
    "blocks.2:5": ("car wheels", "object", 0.5, 1.5),
}
#: A unit whose chosen description is not about faces but whose losing candidate says "face".
CANDIDATE_FACE_UNIT = "blocks.6:200"

#: Every other described unit cycles through these (description, evidence type).
FILLER: tuple[tuple[str, str], ...] = (
    ("green grass", "scene"),
    ("blue sky", "scene"),
    ("white and black stripes", "texture"),
    ("red and orange colours", "colour"),
    ("top boundaries of horizontal objects", "position"),
    ("small spots", "shape"),
    ("unclear", "none"),
)


def description_rows(units: pd.DataFrame) -> pd.DataFrame:
    """One description per unit of blocks.2 and blocks.6 (the classifier stays undescribed)."""
    rows = []
    for i, unit in enumerate(units[units.layer != "classifier"].itertuples()):
        if unit.key in NAMED_UNITS:
            text, kind, confidence, score = NAMED_UNITS[unit.key]
        else:
            text, kind = FILLER[i % len(FILLER)]
            confidence, score = 0.1 + 0.08 * (i % 10), -1.0 + 0.25 * (i % 8)
        rows.append(
            {
                "unit_id": unit.unit_id, "describer": DESCRIBER, "description": text, "score": score,
                "log_p_given_e": score - 0.5, "log_p": -2.5, "confidence": confidence, "evidence_type": kind,
                "evidence": json.dumps(
                    {"best_iou": round(confidence / 4, 3), "concept": text.split()[-1],
                     "eye_classes": [["n00000000", 0.5]], "attributes": [kind]}
                ),
            }
        )
    return pd.DataFrame(rows)


def candidate_rows(descriptions: pd.DataFrame, keys: dict[int, str]) -> pd.DataFrame:
    """Three candidates per described unit: the winner, then two that lost."""
    rows = []
    for d in descriptions.itertuples():
        losers = ["face close-ups", "dogs"] if keys[d.unit_id] == CANDIDATE_FACE_UNIT else ["objects", "textures"]
        for rank, text in enumerate([d.description, *losers]):
            rows.append(
                {
                    "unit_id": d.unit_id, "describer": DESCRIBER, "rank": rank, "text": text,
                    "log_p_given_e": d.log_p_given_e - rank, "log_p": -2.5 - rank, "score": d.score - rank,
                }
            )
    return pd.DataFrame(rows)


def with_vectors(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The frame with an ``embedding`` column of real MiniLM vectors of ``column``."""
    texts = sorted(set(frame[column]))
    vectors = dict(zip(texts, embed(texts)))
    return frame.assign(embedding=[vectors[t].tolist() for t in frame[column]])


def add_descriptions(path: Path, run_id: str | None = None) -> None:
    """Write descriptions and candidates (with vectors) into the catalog at ``path`` in one
    transaction, for the units of ``run_id`` (default: every run's)."""
    with Catalog(path, writable=True) as catalog, catalog.transaction():
        units = catalog.units(run_id)
        descriptions = with_vectors(description_rows(units), "description")
        candidates = with_vectors(candidate_rows(descriptions, dict(zip(units.unit_id, units.key))), "text")
        catalog.insert_frame("descriptions", descriptions)
        catalog.insert_frame("candidates", candidates)
