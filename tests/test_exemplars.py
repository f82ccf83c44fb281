"""milan_core.exemplars: an exemplar's region is its map bilinearly upsampled above the threshold,
drawn without torch exactly as the describers' batched torch masks draw it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from milan_core.exemplars import mask, upsample


@pytest.mark.parametrize(
    ("height", "width", "size"), [(7, 7, 168), (28, 28, 224), (14, 14, 112), (3, 5, 64), (1, 1, 9)]
)
def test_numpy_upsampling_is_torchs_bilinear_interpolate(height: int, width: int, size: int) -> None:
    """The app draws regions without torch and the describers measure them with torch's
    ``interpolate``: the two must give the region a person sees and the one that was described."""
    generator = torch.Generator().manual_seed(height * 100 + width)
    amap = torch.randn(height, width, generator=generator).numpy() * 3
    expected = torch.nn.functional.interpolate(
        torch.as_tensor(amap)[None, None], size=(size, size), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    assert upsample(amap, size).shape == (size, size)
    assert np.abs(upsample(amap, size) - expected).max() < 1e-5
    for threshold in np.quantile(expected, [0.3, 0.7, 0.95]) + 1e-3:  # (a 1x1 map is one value)
        decided = np.abs(expected - threshold) > 1e-5  # not a tie that float rounding breaks either way
        same = mask(amap, float(threshold), size) == (expected > threshold)
        assert same[decided].all() and decided.mean() > 0.9
