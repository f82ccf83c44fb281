"""Editing: switch off the units whose descriptions match a query and keep the edited model.

The edited model is one ``torch.save`` file (format ``milan-edit``, version 1), a dict with

- ``format``: "milan-edit", ``version``: 1;
- ``model``: the name ``load_model`` understands (e.g. "efficientnet-lite0");
- ``state_dict``: the model's weights (unchanged: the edit is a mask, not a weight change, because
  a channel feeding a residual sum or a norm layer cannot be zeroed by weights alone);
- ``ablated``: {layer: [unit, ...]} — the channels that are zeroed by a forward hook;
- ``run_id``, ``query``: where the list came from.

``load_edited(path)`` rebuilds the model, loads the weights and applies the zeroing; loading the
state dict alone (``load_model(name, weights=path)`` for torchvision/timm names) gives the
unedited model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch

from milan_core.errors import UserError
from milan_core.hooks import ablated
from milan_core.models import LoadedModel, load_recorded_model

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


def load_edited(path: Path) -> EditedModel:
    """Rebuild an edited model from its file, with its units switched off."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as error:
        raise UserError(f"cannot read the edited model {path}: {str(error).splitlines()[0]}") from error
    if not isinstance(payload, dict) or payload.get("format") != EDIT_FORMAT:
        raise UserError(f"{path} is not an edited model (written by: python -m milan_core edit)")
    if payload.get("version") != EDIT_VERSION:
        raise UserError(f"{path} is edit format version {payload.get('version')}; this code reads {EDIT_VERSION}")
    loaded = load_recorded_model(str(payload["model"]), None)  # its weights come on the next line
    loaded.module.load_state_dict(payload["state_dict"])
    edited = EditedModel(loaded, dict(payload["ablated"]), str(payload["run_id"]), str(payload["query"]))
    edited._hooks.enter_context(ablated(loaded.module, edited.ablated))
    return edited
