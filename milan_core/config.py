"""One typed configuration per dissection run, stored with the run's results in the catalog."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

DEFAULT_MODEL = "efficientnet-lite0"
DEFAULT_LAYERS = ("blocks.2", "blocks.4", "blocks.6")


@dataclass(frozen=True)
class DissectConfig:
    """Every parameter that changes a dissection's results (and nothing that does not)."""

    model: str = DEFAULT_MODEL
    weights: str | None = None
    images: str | None = None  # None: the embedded probe set
    layers: tuple[str, ...] = DEFAULT_LAYERS
    k: int = 15  # exemplars per unit (MILAN's choice)
    quantile: float = 0.99  # threshold quantile: MILAN 0.99, Network Dissection 0.995
    batch_size: int = 32
    workers: int = 1
    seed: int = 0
    max_images: int | None = None
    precision: str = "fp32"  # of the model's forward pass (fp32, bf16, fp16); the statistics are fp32
    run_id: str | None = field(default=None, compare=False)

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
