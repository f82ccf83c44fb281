"""The streaming statistics: exact top-k, quantiles within one bin, and merges equal to one pass."""

from __future__ import annotations

import io

import pytest
import torch

from milan_core.hooks import LayerRecorder
from milan_core.images import ProbeDataset, find_images, iterate_batches
from milan_core.statistics import Histogram, LayerStatistics, Moments, TopK


def _batches(maps: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    indices = torch.arange(maps.shape[0])
    return [(maps[i : i + size], indices[i : i + size]) for i in range(0, maps.shape[0], size)]


def _stream(maps: torch.Tensor, k: int, batch: int) -> LayerStatistics:
    stats = LayerStatistics.empty(maps.shape[1], k, maps.shape[2], maps.shape[3])
    for chunk, indices in _batches(maps, batch):
        stats.update(chunk, indices)
    return stats


@pytest.fixture(scope="module")
def tied_maps() -> torch.Tensor:
    """Integer activations, so many images tie on their spatial maximum."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(-3, 6, (37, 5, 3, 4), generator=generator).float()


def test_topk_is_the_exact_top_images_with_ties_broken_by_image_index(tied_maps: torch.Tensor) -> None:
    stats = _stream(tied_maps, k=6, batch=8)
    peaks = tied_maps.flatten(2).amax(dim=2)  # (N, C)
    for unit in range(tied_maps.shape[1]):
        expected = sorted(range(len(peaks)), key=lambda i: (-peaks[i, unit].item(), i))[:6]
        assert stats.topk.images[unit].tolist() == expected
        assert torch.equal(stats.topk.values[unit], peaks[expected, unit])
        assert torch.equal(stats.topk.maps[unit], tied_maps[expected, unit].flatten(1))


def test_topk_keeps_empty_slots_when_fewer_images_than_k() -> None:
    stats = _stream(torch.ones(2, 3, 2, 2), k=4, batch=2)
    assert stats.topk.images[0].tolist() == [0, 1, -1, -1]


@pytest.mark.parametrize("split", [1, 13, 30])
def test_merging_shards_equals_one_pass_exactly(tied_maps: torch.Tensor, split: int) -> None:
    whole = _stream(tied_maps, k=6, batch=8)
    first = _stream(tied_maps[:split], k=6, batch=5)
    second = LayerStatistics.empty(5, 6, 3, 4)
    for chunk, indices in _batches(tied_maps[split:], 7):
        second.update(chunk, indices + split)
    merged = second.merge(first)  # order of shards does not matter
    for name in ("values", "images", "maps"):
        assert torch.equal(getattr(merged.topk, name), getattr(whole.topk, name))
    for name in ("counts", "exponent", "offset", "lo", "hi"):
        assert torch.equal(getattr(merged.histogram, name), getattr(whole.histogram, name))
    assert torch.equal(merged.histogram.quantile(0.99), whole.histogram.quantile(0.99))
    assert torch.allclose(merged.moments.mean(), whole.moments.mean())


def test_quantile_is_within_one_bin_of_the_exact_quantile() -> None:
    generator = torch.Generator().manual_seed(1)
    # Units with different scales and signs; the range grows from batch to batch.
    scales = torch.tensor([0.01, 1.0, 50.0, 1000.0])
    shifts = torch.tensor([0.0, -5.0, 100.0, -2000.0])
    batches = [
        torch.randn(4, 5000, generator=generator) * scales[:, None] * (1 + step) + shifts[:, None]
        for step in range(6)
    ]
    histogram = Histogram.empty(4)
    for values in batches:
        histogram = histogram.update(values)
    everything = torch.cat(batches, dim=1).double()
    for q in (0.5, 0.99, 0.995):
        exact = torch.quantile(everything, q, dim=1)
        width = torch.pow(2.0, histogram.exponent.double())
        error = (histogram.quantile(q).double() - exact).abs()
        assert torch.all(error <= width), (q, error, width)
        # The lattice is fine: a bin is a small part of each unit's range.
        assert torch.all(width <= 2 * (everything.amax(1) - everything.amin(1)) / histogram.bins)
    assert histogram.counts.sum(1).tolist() == [30000] * 4


def test_quantile_of_a_constant_unit_is_that_constant() -> None:
    histogram = Histogram.empty(1).update(torch.full((1, 100), 0.25))
    assert histogram.quantile(0.99).item() == pytest.approx(0.25)


def test_moments_match_torch() -> None:
    values = torch.randn(3, 4000, generator=torch.Generator().manual_seed(2)) * 3 + 1
    moments = Moments.empty(3).update(values[:, :1000]).update(values[:, 1000:])
    assert torch.allclose(moments.mean(), values.double().mean(1), atol=1e-5)
    assert torch.allclose(moments.std(), values.double().std(1, unbiased=False), atol=1e-4)


def test_coarse_histogram_keeps_every_count() -> None:
    values = torch.randn(2, 999, generator=torch.Generator().manual_seed(3))
    histogram = Histogram.empty(2).update(values)
    coarse = histogram.coarse(32)
    assert coarse.shape == (2, 32)
    assert coarse.sum(1).tolist() == [999, 999]


def test_state_survives_a_save_and_load_then_merges(tied_maps: torch.Tensor) -> None:
    first, second = _stream(tied_maps[:20], 4, 6), LayerStatistics.empty(5, 4, 3, 4)
    second.update(tied_maps[20:], torch.arange(20, 37))
    buffer = io.BytesIO()
    torch.save(first.state(), buffer)
    buffer.seek(0)
    restored = LayerStatistics.from_state(torch.load(buffer, weights_only=True))
    merged = restored.merge(second)
    assert torch.equal(merged.topk.images, _stream(tied_maps, 4, 8).topk.images)


def test_sharded_real_activations_merge_to_the_one_pass_state(lite0, probe_dir) -> None:
    """EfficientNet-Lite0's blocks.4 over 24 photos: two shards merged == one pass."""
    probes = find_images(probe_dir)
    dataset = ProbeDataset(probe_dir, probes, lite0.preprocessing.geometry, lite0.preprocessing.to_tensor,
                           thumbnails=False)
    whole = LayerStatistics.empty(112, 5, 14, 14)
    shards = [LayerStatistics.empty(112, 5, 14, 14), LayerStatistics.empty(112, 5, 14, 14)]
    with LayerRecorder(lite0.module, ["blocks.4"]) as recorder, torch.inference_mode():
        for number, batch in enumerate(iterate_batches(dataset, 8, 0)):
            lite0.module(batch.pixels)
            indices = torch.tensor([image.index for image in batch.images])
            whole.update(recorder.spatial("blocks.4"), indices)
            shards[number % 2].update(recorder.spatial("blocks.4"), indices)
    merged = shards[0].merge(shards[1])
    assert torch.equal(merged.topk.images, whole.topk.images)
    assert torch.equal(merged.histogram.counts, whole.histogram.counts)
    assert torch.equal(merged.histogram.quantile(0.99), whole.histogram.quantile(0.99))
    assert (whole.topk.images >= 0).all()


def test_topk_update_rejects_nothing_silently_on_shape() -> None:
    topk = TopK.empty(2, 3, 4)
    with pytest.raises(RuntimeError):
        topk.update(torch.zeros(1, 3, 2, 2), torch.tensor([0]))  # 3 units where 2 are kept
