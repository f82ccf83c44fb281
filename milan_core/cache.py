"""Derived data kept between runs: files that are slow to make and cheap to read.

Everything here can be rebuilt from installed packages, so a cache file is read when it is whole
and ignored when it is not, and a home that cannot be written only costs the rebuild next time.
Writes are atomic (a temporary file, then a rename), so a concurrent reader sees no file or a
whole one; two writers at once lose nothing but the loser's additions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def cache_dir() -> Path:
    """Where derived data is kept between runs (``$XDG_CACHE_HOME/milan_core``, else ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "milan_core"


def read_cached(path: Path) -> Any | None:
    """The tensors and strings stored at ``path`` (no pickled code), or None if absent or damaged."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # a truncated or foreign file: rebuild it  # noqa: BLE001
        return None


def write_cached(path: Path, value: Any) -> None:
    """Store tensors and strings at ``path`` atomically; quietly skip an unwritable cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(value, partial)
        partial.replace(path)
    except OSError:
        pass
