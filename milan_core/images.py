"""Stage 1: the probe images — finding them, reading them, and batching them for the model.

Images are read lazily, one batch at a time, so the job never holds the probe set in memory. A file
that cannot be decoded is skipped and counted, not fatal: a probe set of 50,000 photos with one
truncated JPEG should still produce a catalog.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from milan_core.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
THUMBNAIL_SIZE = 112
THUMBNAIL_QUALITY = 85

# ImageNet-style file names: n01440764_tench.JPEG (WordNet id, then the class name).
_IMAGENET_NAME = re.compile(r"^(n\d{8})_(.+)$")


@dataclass(frozen=True)
class ProbeImage:
    """One probe image: where it is (relative to the probe root) and its label, if any."""

    index: int
    path: str
    label: str | None


@dataclass(frozen=True)
class LoadedImage:
    """What the loader yields for one image that decoded: the model's view plus catalog fields."""

    index: int
    sha256: str
    width: int
    height: int
    thumbnail: bytes


@dataclass
class Batch:
    """A batch of decoded images ready for the model; ``skipped`` lists files that failed."""

    pixels: torch.Tensor
    images: list[LoadedImage]
    skipped: list[str]


def default_probe_root() -> Path:
    """The embedded probe set: the real photos scikit-image ships in its wheel.

    It lets the first command of the README run on a fresh machine; a real catalog wants a real
    probe set (ImageNet val, Places365 val, or ``../shared/data/imagenet-samples``).
    """
    import skimage

    return Path(skimage.__file__).parent / "data"


def label_from_path(relative: Path) -> str | None:
    """The label of an image: an ImageNet-style file name wins, else its subfolder's name."""
    match = _IMAGENET_NAME.match(relative.stem)
    if match:
        return match.group(1)
    if len(relative.parts) > 1:
        return relative.parts[-2]
    return None


def find_images(root: Path) -> list[ProbeImage]:
    """All images below ``root`` (recursively), sorted by path so that runs are reproducible."""
    if not root.exists():
        raise UserError(f"image folder not found: {root} (give --images a folder of photos)")
    if root.is_file():
        raise UserError(f"--images wants a folder, not a file: {root}")
    paths = sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        suffixes = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise UserError(f"no images ({suffixes}) found under {root}")
    return [
        ProbeImage(index=i, path=p.relative_to(root).as_posix(), label=label_from_path(p.relative_to(root)))
        for i, p in enumerate(paths)
    ]


def encode_thumbnail(view: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """A small JPEG of the model's view of an image, for the catalog and the app."""
    small = view.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()


class ProbeDataset(Dataset):
    """Decodes one image into the model's input tensor, its thumbnail and its content hash.

    ``geometry`` resizes and crops (the model's view); ``to_tensor`` normalises. A file that does
    not decode returns ``None`` so the collate function can count it as skipped.
    """

    def __init__(
        self,
        root: Path,
        images: Sequence[ProbeImage],
        geometry: Callable[[Image.Image], Image.Image],
        to_tensor: Callable[[Image.Image], torch.Tensor],
        thumbnails: bool = True,
    ) -> None:
        self.root = root
        self.images = list(images)
        self.geometry = geometry
        self.to_tensor = to_tensor
        self.thumbnails = thumbnails

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[ProbeImage, torch.Tensor | None, LoadedImage | None]:
        probe = self.images[i]
        try:
            data = (self.root / probe.path).read_bytes()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = Image.open(io.BytesIO(data))
                image.load()
            image = image.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
            return probe, None, None
        view = self.geometry(image)
        loaded = LoadedImage(
            index=probe.index,
            sha256=hashlib.sha256(data).hexdigest(),
            width=image.width,
            height=image.height,
            thumbnail=encode_thumbnail(view) if self.thumbnails else b"",
        )
        return probe, self.to_tensor(view), loaded


def _collate(items: list[tuple[ProbeImage, torch.Tensor | None, LoadedImage | None]]) -> Batch:
    good = [(t, loaded) for _, t, loaded in items if t is not None and loaded is not None]
    skipped = [p.path for p, t, _ in items if t is None]
    pixels = torch.stack([t for t, _ in good]) if good else torch.empty(0)
    return Batch(pixels=pixels, images=[loaded for _, loaded in good], skipped=skipped)


def iterate_batches(
    dataset: ProbeDataset, batch_size: int, workers: int
) -> Iterator[Batch]:
    """Batches in file order; decoding happens in ``workers`` background processes."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    yield from loader
