"""Stage 2b: reading and switching off units of any layer by name, through forward hooks.

Every layer's output is brought to one shape, (N, C, H, W): convolutional maps as they are,
transformer tokens (N, T, C) by laying the patch tokens back on their spatial grid (prefix tokens
such as CLS are dropped), and flat features (N, C) as 1x1 maps. Hooks are context managers, so the
model is always left as it was found, even when the body raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from milan_core.errors import UserError


@dataclass(frozen=True)
class LayerInfo:
    """A hookable layer: its name, its raw output shape (without batch) and how it is read."""

    name: str
    shape: tuple[int, ...]
    kind: str


def _prefix_tokens(model: nn.Module, tokens: int) -> int:
    """How many leading tokens (CLS, distillation, registers) are not patches."""
    declared = getattr(model, "num_prefix_tokens", None)
    if isinstance(declared, int):
        return declared
    return tokens - math.isqrt(tokens) ** 2


def layer_kind(output: torch.Tensor) -> str:
    """'conv', 'tokens' or 'flat' by the rank of a layer's output."""
    return {4: "conv", 3: "tokens", 2: "flat"}.get(output.dim(), "other")


def as_spatial(output: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """A layer's output as (N, C, H, W) float maps, whatever its rank."""
    kind = layer_kind(output)
    if kind == "conv":
        return output.float()
    if kind == "flat":
        return output.float()[:, :, None, None]
    if kind == "tokens":
        batch, tokens, channels = output.shape
        patches = output[:, _prefix_tokens(model, tokens) :, :]
        side = math.isqrt(patches.shape[1])
        if side * side != patches.shape[1]:
            raise UserError(f"cannot lay {patches.shape[1]} tokens on a square grid")
        return patches.float().transpose(1, 2).reshape(batch, channels, side, side)
    raise UserError(f"a layer with output shape {tuple(output.shape)} has no units to dissect")


def find_modules(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """The named submodules, or a UserError listing what exists."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules or n == ""]
    if missing:
        raise UserError(
            f"unknown layer(s) {', '.join(missing)}; list them with: python -m milan_core layers --model NAME"
        )
    return {n: modules[n] for n in names}


def first_tensor(output: object) -> torch.Tensor | None:
    """A module's output tensor, or the first of a tuple of them (None if it has none)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


class LayerRecorder:
    """Keeps the latest output of each named layer during a forward pass (netdissect's retain_layer)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.model = model
        self.modules = find_modules(model, names)
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str):
        def keep(_module: nn.Module, _inputs: object, output: object) -> None:
            tensor = first_tensor(output)
            if tensor is not None:
                self.outputs[name] = tensor.detach()

        return keep

    def __enter__(self) -> LayerRecorder:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def spatial(self, name: str) -> torch.Tensor:
        """The recorded output of ``name`` as (N, C, H, W)."""
        return as_spatial(self.outputs[name], self.model)


def list_layers(model: nn.Module, example: torch.Tensor) -> list[LayerInfo]:
    """Every named submodule whose output is a tensor with units, found by one forward pass."""
    names = [n for n, _ in model.named_modules() if n]
    with LayerRecorder(model, names) as recorder, torch.no_grad():
        model(example)
    infos = []
    for name in names:
        output = recorder.outputs.get(name)
        if output is not None and layer_kind(output) != "other":
            infos.append(LayerInfo(name, tuple(output.shape[1:]), layer_kind(output)))
    return infos


def _channel_axis(output: torch.Tensor) -> int:
    return -1 if output.dim() == 3 else 1


@contextmanager
def ablated(model: nn.Module, units: Mapping[str, Sequence[int]]) -> Iterator[nn.Module]:
    """Zero the given channels of the given layers while the block runs; restore on exit.

    For token layers the channel is the last axis; for conv and flat layers it is axis 1.
    """
    modules = find_modules(model, list(units))
    handles = []
    for name, module in modules.items():
        index = torch.as_tensor(sorted(set(int(u) for u in units[name])), dtype=torch.long)

        def zero(_m: nn.Module, _i: object, output: torch.Tensor, index: torch.Tensor = index) -> torch.Tensor:
            output = output.clone()
            output.index_fill_(_channel_axis(output), index, 0.0)
            return output

        if len(index):
            handles.append(module.register_forward_hook(zero))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
