"""Where the tests' data lives: the suite's own probe set (``tests/data``) and the optional shared data.

``tests/data`` is built from scikit-image's photos by ``tests/data/build_probe.py``; ``../shared/data``
(1000 ImageNet photos, coco128-seg) exists beside the project on the team's machines and in CI, and
only tests marked ``@pytest.mark.shared`` may use it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
PROBE = DATA / "probe"  # 36 photos, ImageNet-style names
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_MISSING = f"needs the shared data at {SHARED}"


def shared_folder(name: str) -> Path:
    """A folder of ``../shared/data``; skips (a declared reason for ``shared`` tests) when it is absent."""
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"{SHARED_MISSING} ({name})")
    return folder
