"""Stage 3: streaming, mergeable per-unit statistics — the heart of dissection.

For each layer, one ``LayerStatistics`` is updated batch by batch with the layer's (N, C, H, W)
activations, using torch ops over all units at once. It holds, per unit:

- ``TopK``: the k images with the highest spatial-max activation, with their activation maps, so the
  exemplar masks need no second pass over the images;
- ``Histogram``: counts over every spatial position on a power-of-two lattice of bin widths, which
  gives the high-quantile threshold (Network Dissection's top 0.5%, MILAN's 99th percentile);
- ``Moments``: count, sum, sum of squares, min and max.

Memory is units x (k x map size + bins), independent of the number of images.

Every piece is **mergeable**: the state of two disjoint shards merges into the state of their union.
For ``TopK`` the merge is exact (ties are broken by image index). For ``Histogram`` the bin width
is always a power of two chosen as the finest that fits the unit's whole range in ``bins`` bins, and
coarser bins nest exactly over finer ones; so a merged histogram is *identical* to the one-pass
histogram, and the quantile read from it is within one bin width of the exact quantile.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

HISTOGRAM_BINS = 2048
_MIN_EXPONENT = -40


def _tensor_fields(obj: object) -> dict[str, torch.Tensor]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


@dataclass
class TopK:
    """Per unit, the k highest spatial-max activations, their image indices and their maps."""

    values: torch.Tensor  # (C, k) float32, -inf where empty
    images: torch.Tensor  # (C, k) int64, -1 where empty
    maps: torch.Tensor  # (C, k, H*W) float32

    @classmethod
    def empty(cls, units: int, k: int, map_size: int, device: torch.device | None = None) -> TopK:
        return cls(
            values=torch.full((units, k), float("-inf"), device=device),
            images=torch.full((units, k), -1, dtype=torch.long, device=device),
            maps=torch.zeros(units, k, map_size, device=device),
        )

    @property
    def k(self) -> int:
        return self.values.shape[1]

    def _select(
        self, values: torch.Tensor, images: torch.Tensor, kept: torch.Tensor, incoming: torch.Tensor
    ) -> TopK:
        """Keep the k best candidates: highest value first, lower image index on ties.

        ``values``/``images`` list the kept entries, then the incoming ones; their maps stay in two
        tensors and only the k winners' maps are gathered, so a batch's maps are never copied whole.
        """
        by_image = torch.argsort(images, dim=1, stable=True)
        values, images = values.gather(1, by_image), images.gather(1, by_image)
        by_value = torch.argsort(values, dim=1, descending=True, stable=True)[:, : self.k]
        order = by_image.gather(1, by_value)[:, :, None]
        width, size = kept.shape[1], kept.shape[2]
        from_kept = kept.gather(1, order.clamp(max=width - 1).expand(-1, -1, size))
        from_incoming = incoming.gather(1, (order - width).clamp_min(0).expand(-1, -1, size))
        return TopK(
            values=values.gather(1, by_value),
            images=images.gather(1, by_value),
            maps=torch.where(order < width, from_kept, from_incoming),
        )

    def update(self, maps: torch.Tensor, image_indices: torch.Tensor) -> TopK:
        """Fold in a batch of (N, C, H, W) activations of the images ``image_indices`` (N,)."""
        batch, units = maps.shape[:2]
        flat = maps.reshape(batch, units, -1).transpose(0, 1)  # (C, N, HW), a view
        return self._select(
            torch.cat([self.values, flat.amax(dim=2)], dim=1),
            torch.cat([self.images, image_indices[None, :].expand(units, -1)], dim=1),
            self.maps,
            flat,
        )

    def merge(self, other: TopK) -> TopK:
        return self._select(
            torch.cat([self.values, other.values], dim=1),
            torch.cat([self.images, other.images], dim=1),
            self.maps,
            other.maps,
        )


def _finest_exponent(lo: torch.Tensor, hi: torch.Tensor, bins: int) -> torch.Tensor:
    """Per unit, the smallest e such that [lo, hi] spans at most ``bins`` bins of width 2**e."""
    spread = (hi - lo).double().clamp_min(2.0**_MIN_EXPONENT)
    exponent = torch.floor(torch.log2(spread / bins)).long().clamp_min(_MIN_EXPONENT)
    while True:
        too_wide = _bin_index(hi, exponent) - _bin_index(lo, exponent) + 1 > bins
        if not too_wide.any():
            return exponent
        exponent = exponent + too_wide.long()


def _bin_index(values: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """Global lattice index floor(v / 2**e); ``exponent`` broadcasts over the leading axis."""
    scale = torch.pow(2.0, -exponent.double()).to(values.dtype)
    scaled = values * scale.reshape((-1,) + (1,) * (values.dim() - 1))  # exact: a power of two
    return scaled.floor_().long()


@dataclass
class Histogram:
    """Per unit, counts of activations on a lattice: bin b covers [(offset+b)*2**e, (offset+b+1)*2**e)."""

    counts: torch.Tensor  # (C, bins) int64
    exponent: torch.Tensor  # (C,) int64
    offset: torch.Tensor  # (C,) int64
    lo: torch.Tensor  # (C,) float32, +inf when empty
    hi: torch.Tensor  # (C,) float32, -inf when empty

    @classmethod
    def empty(cls, units: int, bins: int = HISTOGRAM_BINS, device: torch.device | None = None) -> Histogram:
        return cls(
            counts=torch.zeros(units, bins, dtype=torch.long, device=device),
            exponent=torch.full((units,), _MIN_EXPONENT, dtype=torch.long, device=device),
            offset=torch.zeros(units, dtype=torch.long, device=device),
            lo=torch.full((units,), float("inf"), device=device),
            hi=torch.full((units,), float("-inf"), device=device),
        )

    @property
    def bins(self) -> int:
        return self.counts.shape[1]

    def _rebinned(self, exponent: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """These counts on a coarser (or equal) lattice; coarse bins nest over fine ones exactly."""
        if torch.equal(exponent, self.exponent) and torch.equal(offset, self.offset):
            return self.counts  # the common case once a unit's range has settled
        shift = (exponent - self.exponent)[:, None]
        global_index = self.offset[:, None] + torch.arange(self.bins, device=self.counts.device)[None, :]
        local = (global_index >> shift) - offset[:, None]
        local = local.clamp(0, self.bins - 1)  # only empty bins can fall outside
        return torch.zeros_like(self.counts).scatter_add_(1, local, self.counts)

    def merge(self, other: Histogram) -> Histogram:
        lo, hi = torch.minimum(self.lo, other.lo), torch.maximum(self.hi, other.hi)
        filled = torch.isfinite(lo)
        finest = _finest_exponent(lo.where(filled, 0), hi.where(filled, 0), self.bins)
        exponent = torch.where(filled, finest, _MIN_EXPONENT)
        offset = torch.where(filled, _bin_index(lo.where(filled, 0), exponent), 0)
        return Histogram(
            counts=self._rebinned(exponent, offset) + other._rebinned(exponent, offset),
            exponent=exponent,
            offset=offset,
            lo=lo,
            hi=hi,
        )

    @classmethod
    def of_values(cls, values: torch.Tensor, bins: int = HISTOGRAM_BINS) -> Histogram:
        """The histogram of (C, M) values, at the finest lattice that fits each unit's range.

        Each unit's range is its own min and max, so every index lands inside its row without
        clamping; one ``bincount`` over row-shifted indices counts all units at once.
        """
        units = values.shape[0]
        lo, hi = torch.aminmax(values, dim=1)
        exponent = _finest_exponent(lo, hi, bins)
        offset = _bin_index(lo, exponent)
        index = _bin_index(values, exponent)
        index.sub_((offset - torch.arange(units, device=values.device) * bins)[:, None])
        counts = torch.bincount(index.reshape(-1), minlength=units * bins).view(units, bins)
        return cls(counts, exponent, offset, lo, hi)

    def update(self, values: torch.Tensor) -> Histogram:
        return self.merge(Histogram.of_values(values, self.bins))

    def _edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        width = torch.pow(2.0, self.exponent.double())
        return self.offset.double() * width, width

    def quantile(self, q: float) -> torch.Tensor:
        """Per unit, the q-quantile of all values seen, within one bin width (2**exponent)."""
        total = self.counts.sum(dim=1).double()
        cumulative = self.counts.cumsum(dim=1).double()
        target = (q * total)[:, None]
        bin_of = torch.searchsorted(cumulative, target).clamp(max=self.bins - 1)
        before = torch.where(bin_of > 0, cumulative.gather(1, (bin_of - 1).clamp_min(0)), 0.0)
        inside = self.counts.gather(1, bin_of).double().clamp_min(1)
        start, width = self._edges()
        value = start[:, None] + width[:, None] * (bin_of.double() + (target - before) / inside)
        return value[:, 0].clamp(self.lo.double(), self.hi.double()).float()

    def coarse(self, bins: int) -> torch.Tensor:
        """Counts over ``bins`` equal bins from lo to hi, for plots (bin centres are assigned)."""
        start, width = self._edges()
        lattice = torch.arange(self.bins, device=start.device).double()
        centres = start[:, None] + width[:, None] * (lattice[None, :] + 0.5)
        span = (self.hi - self.lo).double().clamp_min(1e-12)[:, None]
        index = ((centres - self.lo.double()[:, None]) / span * bins).long().clamp(0, bins - 1)
        counts = torch.zeros(self.counts.shape[0], bins, dtype=torch.long, device=self.counts.device)
        return counts.scatter_add_(1, index, self.counts)


@dataclass
class Moments:
    """Per unit count, sum and sum of squares (float64), for the mean and spread."""

    count: torch.Tensor
    total: torch.Tensor
    squares: torch.Tensor

    @classmethod
    def empty(cls, units: int, device: torch.device | None = None) -> Moments:
        zeros = torch.zeros(units, dtype=torch.float64, device=device)
        return cls(zeros.clone(), zeros.clone(), zeros.clone())

    def update(self, values: torch.Tensor) -> Moments:
        # Per-batch sums in float32 (a batch is small), accumulated across batches in float64.
        return Moments(
            self.count + values.shape[1],
            self.total + values.sum(1).double(),
            self.squares + values.square().sum(1).double(),
        )

    def merge(self, other: Moments) -> Moments:
        return Moments(self.count + other.count, self.total + other.total, self.squares + other.squares)

    def mean(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1)

    def std(self) -> torch.Tensor:
        return (self.squares / self.count.clamp_min(1) - self.mean() ** 2).clamp_min(0).sqrt()


@dataclass
class LayerStatistics:
    """Everything kept for one layer; ``update`` per batch, ``merge`` across shards."""

    topk: TopK
    histogram: Histogram
    moments: Moments
    map_height: int
    map_width: int

    @classmethod
    def empty(cls, units: int, k: int, map_height: int, map_width: int, bins: int = HISTOGRAM_BINS,
              device: torch.device | None = None) -> LayerStatistics:
        """No images seen yet; the state lives on ``device`` (where the layer's maps are made)."""
        return cls(
            TopK.empty(units, k, map_height * map_width, device),
            Histogram.empty(units, bins, device),
            Moments.empty(units, device),
            map_height,
            map_width,
        )

    def update(self, maps: torch.Tensor, image_indices: torch.Tensor) -> None:
        """Fold in a batch of (N, C, H, W) maps; all units at once."""
        values = maps.transpose(0, 1).reshape(maps.shape[1], -1)
        self.topk = self.topk.update(maps, image_indices)
        self.histogram = self.histogram.update(values)
        self.moments = self.moments.update(values)

    def merge(self, other: LayerStatistics) -> LayerStatistics:
        return LayerStatistics(
            self.topk.merge(other.topk),
            self.histogram.merge(other.histogram),
            self.moments.merge(other.moments),
            self.map_height,
            self.map_width,
        )

    def to(self, device: torch.device | str) -> LayerStatistics:
        """The same state on another device (the catalog is written from the CPU)."""
        return LayerStatistics.from_state(self.state(), device)

    def state(self) -> dict[str, object]:
        """A plain dict of tensors (for ``torch.save``), so shards can be merged elsewhere."""
        return {
            "topk": _tensor_fields(self.topk),
            "histogram": _tensor_fields(self.histogram),
            "moments": _tensor_fields(self.moments),
            "map_height": self.map_height,
            "map_width": self.map_width,
        }

    @classmethod
    def from_state(cls, state: dict[str, object], device: torch.device | str | None = None) -> LayerStatistics:
        def on(part: str) -> dict[str, torch.Tensor]:
            return {name: tensor.to(device) for name, tensor in state[part].items()}  # type: ignore[attr-defined]

        return cls(
            TopK(**on("topk")),
            Histogram(**on("histogram")),
            Moments(**on("moments")),
            int(state["map_height"]),  # type: ignore[arg-type]
            int(state["map_width"]),  # type: ignore[arg-type]
        )
