"""Editing: switch off the units whose descriptions match a query and keep the edited model.

The edited model is one ``torch.save`` file (format ``milan-edit``, version 1), a dict with

- ``format``: "milan-edit", ``version``: 1;
- ``model``: the name ``load_model`` understands (e.g. "efficientnet-lite0");
- ``state_dict``: the model's weights (unchanged: the edit is a mask, not a weight change, because
  a channel feeding a residual sum or a norm layer cannot be zeroed by weights alone);
- ``ablated``: {layer: [unit, ...]} — the channels that are zeroed by a forward hook;
- ``run_id``, ``query``: where the list came from.

``load_edited(path)`` rebuilds the model (a ``module:callable`` one only with
``trust_model_code=True``: the file is data, not code), loads the weights and applies the zeroing; loading the
state dict alone (``load_model(name, weights=path)`` for torchvision/timm names) gives the
unedited model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from milan_core.errors import UserError
from milan_core.hooks import ablated
from milan_core.models import LoadedModel, load_recorded_model, read_checkpoint, trusting_model_code

EDIT_FORMAT = "milan-edit"
EDIT_VERSION = 1


@dataclass
class EditedModel:
    """A loaded model with units zeroed for as long as it lives (``release()`` undoes the edit)."""

    loaded: LoadedModel
    ablated: dict[str, list[int]]
    run_id: str
    query: str
    _hooks: ExitStack = field(default_factory=ExitStack, repr=False)

    def release(self) -> None:
        self._hooks.close()


def edit_payload(
    loaded: LoadedModel, units: Mapping[str, Sequence[int]], run_id: str, query: str
) -> dict[str, object]:
    """What an edit file holds (see the module docstring)."""
    return {
        "format": EDIT_FORMAT, "version": EDIT_VERSION, "model": loaded.name,
        "state_dict": loaded.module.state_dict(),
        "ablated": {layer: sorted(int(u) for u in us) for layer, us in units.items()},
        "run_id": run_id, "query": query,
    }


def load_edited(path: Path, trust_model_code: bool = False) -> EditedModel:
    """Rebuild an edited model from its file, with its units switched off.

    A file's ``module:callable`` model is code: it is rebuilt only with ``trust_model_code=True``
    (known names such as ``efficientnet-lite0`` need nothing).
    """
    if not Path(path).is_file():
        raise UserError(f"edited model not found: {path}")
    payload = read_checkpoint(Path(path), "an edited model written by: python -m milan_core edit")
    if not isinstance(payload, dict) or payload.get("format") != EDIT_FORMAT:
        raise UserError(f"{path} is not an edited model (written by: python -m milan_core edit)")
    if payload.get("version") != EDIT_VERSION:
        raise UserError(f"{path} is edit format version {payload.get('version')}; this code reads {EDIT_VERSION}")
    with trusting_model_code(None if trust_model_code else ()):
        # its weights come on the next line
        loaded = load_recorded_model(str(payload["model"]), None, f"the edit file {path}")
    loaded.module.load_state_dict(payload["state_dict"])
    edited = EditedModel(loaded, dict(payload["ablated"]), str(payload["run_id"]), str(payload["query"]))
    edited._hooks.enter_context(ablated(loaded.module, edited.ablated))
    return edited
