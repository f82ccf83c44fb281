"""Describers by name: ``--describer NAME`` or ``--describer NAME:OPTION`` (e.g. a model path).

Each factory takes the option (or None) and returns a ``Describer``; the built-in offline describer,
listed here, also takes the device its models run on (``describe --device``). Model-based
describers live in ``milan_core.describe.model_based``, which is imported only when one of its
names is asked for (it pulls in ``transformers``) and exposes its own
``DESCRIBERS: dict[str, Callable[[str | None], Describer]]`` (they run on the CPU).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from milan_core.describe.base import Describer
from milan_core.errors import UserError

DEFAULT_DESCRIBER = "evidence"

Factory = Callable[[str | None], Describer]

#: Built-in describers: name -> "module:callable" (imported on first use, so naming one is cheap).
BUILTIN: dict[str, str] = {"evidence": "milan_core.describe.evidence:EvidenceDescriber"}

#: Modules whose ``DESCRIBERS`` dict adds more names (imported only when such a name is asked for).
PLUGIN_MODULES: tuple[str, ...] = ("milan_core.describe.model_based",)


def _plugin_factories() -> dict[str, Factory]:
    factories: dict[str, Factory] = {}
    for module_name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue
            raise
        factories.update(getattr(module, "DESCRIBERS", {}))
    return factories


def _builtin_factory(name: str) -> Callable[[str | None, torch.device | None], Describer]:
    module_name, _, attribute = BUILTIN[name].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def make_describer(spec: str | None, device: torch.device | None = None) -> Describer:
    """The describer named by ``NAME`` or ``NAME:OPTION`` (None: the default offline one); a
    built-in one runs its models on ``device`` (None: the CPU)."""
    name, _, option = (spec or DEFAULT_DESCRIBER).partition(":")
    if name in BUILTIN:
        return _builtin_factory(name)(option or None, device)
    plugins = _plugin_factories()
    if name not in plugins:
        known = ", ".join(sorted(set(BUILTIN) | set(plugins)))
        raise UserError(f"unknown describer {name!r}; use one of: {known}")
    return plugins[name](option or None)
