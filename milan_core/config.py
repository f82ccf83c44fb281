"""Every default in one place, and one typed configuration per dissection run (stored with the run).

The command line, the library functions and the benchmarks all read their defaults from here, so a
default changes in one line and the ``--help`` texts and the code never disagree.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_MODEL = "efficientnet-lite0"
DEFAULT_LAYERS = ("blocks.2", "blocks.4", "blocks.6")
K = 15  # exemplars per unit (MILAN's choice)
QUANTILE = 0.99  # threshold quantile: MILAN 0.99, Network Dissection 0.995
#: The fixed set of evidence types a description's winner can have (``describe.base`` documents
#: them); here, with no heavy import, so the app's filters and charts use the same list.
EVIDENCE_TYPES = ("object", "part", "scene", "colour", "texture", "position", "shape", "none")
EMBEDDING_DIM = 384  # MiniLM's sentence vectors (milan_core.embedding); here so SQL needs no torch import
BATCH_SIZE = 32  # images per forward pass of the dissection
WORKERS = 1  # image-decoding processes of the dissection
EVAL_BATCH_SIZE = 64  # images per forward pass when ablate and edit measure accuracy
CATALOG_PATH = Path("data/catalog.duckdb")
CHECKPOINT_EVERY = 60.0  # seconds of the pass between checkpoints (saving one takes well under 1 s)
LOCK_WAIT = 30.0  # seconds a writer retries a catalog another process holds (the app, a moment at a time)


@dataclass(frozen=True)
class DissectConfig:
    """Every parameter that changes a dissection's results (and nothing that does not).

    ``images`` is kept resolved, so the same folder gives the same run id (and a stored run finds its
    photos) from whatever directory the command was typed in.
    """

    model: str = DEFAULT_MODEL
    weights: str | None = None
    images: str | None = None  # None: the embedded probe set
    layers: tuple[str, ...] = DEFAULT_LAYERS
    k: int = K
    quantile: float = QUANTILE
    batch_size: int = BATCH_SIZE
    workers: int = WORKERS
    max_images: int | None = None
    precision: str = "fp32"  # of the model's forward pass (fp32, bf16, fp16); the statistics are fp32
    run_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.images is not None:
            object.__setattr__(self, "images", str(Path(self.images).resolve()))

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def resolved_run_id(self) -> str:
        """The given run id, or the model's name and a hash of the parameters.

        Rerunning the same parameters therefore replaces that run rather than piling up copies.
        """
        if self.run_id:
            return self.run_id
        params = {k: v for k, v in self.as_dict().items() if k not in ("run_id", "workers", "batch_size")}
        if self.precision == "fp32":
            del params["precision"]  # the ids of fp32 runs stay what they were before it was a choice
        digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
        return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', self.model)}-{digest}"
