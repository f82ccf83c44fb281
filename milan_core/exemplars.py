"""Stage 4: exemplars and their masks — compact activation maps and the regions they highlight.

An exemplar's activation map is stored at feature-map size, quantised to uint8 between its own
minimum and maximum: 1 byte a cell, instead of 2 for float16, which keeps a catalog of EfficientNet
layers well under 5 KB a unit while the mask (the map upsampled to the image, above the unit's
threshold) moves by at most 1/255 of the map's range.

torch is imported by the functions that use it, not here: the catalog browser decodes maps with
``dequantise`` and draws its first page before torch (seconds to import on a busy machine) is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class QuantisedMaps:
    """k maps as uint8 codes with each map's (min, max) to decode them."""

    codes: torch.Tensor  # (..., H*W) uint8
    low: torch.Tensor  # (...,) float32
    high: torch.Tensor  # (...,) float32


def quantise(maps: torch.Tensor) -> QuantisedMaps:
    """Quantise (..., H*W) float maps to uint8, each between its own min and max."""
    import torch

    low, high = maps.amin(dim=-1), maps.amax(dim=-1)
    span = (high - low).clamp_min(1e-12)[..., None]
    codes = torch.round((maps - low[..., None]) / span * 255).clamp(0, 255).to(torch.uint8)
    return QuantisedMaps(codes, low.float(), high.float())


def dequantise(codes: bytes | np.ndarray, low: float, high: float, height: int, width: int) -> np.ndarray:
    """One stored map back to (H, W) float32 activations."""
    array = np.frombuffer(codes, dtype=np.uint8) if isinstance(codes, (bytes, bytearray, memoryview)) else codes
    return dequantise_many(array.reshape(1, -1), np.array([low]), np.array([high]), height, width)[0]


def dequantise_many(codes: np.ndarray, lows: np.ndarray, highs: np.ndarray, height: int, width: int) -> np.ndarray:
    """n stored maps of one shape at once: (n, H*W) uint8 codes, (n,) lows and highs -> (n, H, W).

    The span is taken in float64, then the sum in float32, as for one map with Python floats."""
    lows = np.asarray(lows, np.float64)[:, None]
    spans = (np.asarray(highs, np.float64)[:, None] - lows).astype(np.float32)
    decoded = lows.astype(np.float32) + codes.astype(np.float32) / 255.0 * spans
    return decoded.reshape(len(codes), height, width)


@lru_cache(maxsize=64)
def bilinear_weights(source: int, target: int) -> np.ndarray:
    """(target, source) weights of a bilinear resize from ``source`` to ``target`` cells, as torch's
    ``interpolate(mode="bilinear", align_corners=False)`` computes them (float32, half-pixel centres,
    coordinates below 0 clamped to 0, the last cell repeated past the edge): the describers' batched
    masks (``describe.regions``) use that function, and this one draws the same regions without torch."""
    scale = np.float32(source / target)
    centres = np.maximum(scale * (np.arange(target, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    low = centres.astype(np.int64)
    high = np.minimum(low + 1, source - 1)
    above = np.where(high > low, centres - low.astype(np.float32), np.float32(0))  # past the edge: the last cell
    weights = np.zeros((target, source), np.float32)
    np.add.at(weights, (np.arange(target), low), np.float32(1) - above)
    np.add.at(weights, (np.arange(target), high), above)
    return weights


def upsample(amap: np.ndarray | torch.Tensor, size: int) -> np.ndarray:
    """An (H, W) map bilinearly resized to (size, size), as Network Dissection does (in numpy: the
    app draws regions before torch is loaded)."""
    amap = np.asarray(amap, np.float32)
    return bilinear_weights(amap.shape[0], size) @ amap @ bilinear_weights(amap.shape[1], size).T


def mask(amap: np.ndarray | torch.Tensor, threshold: float, size: int) -> np.ndarray:
    """The exemplar's region at ``size`` x ``size``: where the upsampled map exceeds the threshold."""
    return upsample(amap, size) > threshold
