"""Stage 1: the probe images — finding them, reading them, and batching them for the model.

Images are read lazily, one batch at a time, so the job never holds the probe set in memory. A file
that cannot be decoded is skipped and counted, not fatal: a probe set of 50,000 photos with one
truncated JPEG should still produce a catalog.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import io
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


# Pillow's modes for one channel of more than 8 bits (16-bit PNGs open as I;16 or I).
_WIDE_GREY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def as_rgb(image: Image.Image) -> Image.Image:
    """An image as 8-bit RGB, with 16-bit greys scaled down rather than clipped.

    Pillow's ``convert("RGB")`` clips a 16-bit grey to 255, so a mid-grey 16-bit PNG became white.
    """
    if image.mode in _WIDE_GREY_MODES:
        grey = np.asarray(image, dtype=np.float32)
        return Image.fromarray(np.clip(grey / 257.0 + 0.5, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def first_images(root: Path, max_images: int | None) -> list[ProbeImage]:
    """The images below ``root``, only the first ``max_images`` when given (a positive number)."""
    if max_images is not None and max_images < 1:
        raise UserError(f"--max-images must be at least 1 (got {max_images}); leave it out to use every image")
    return find_images(root)[:max_images]


def encode_thumbnail(view: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """A small JPEG of the model's view of an image, for the catalog and the app."""
    small = view.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()


class ProbeDataset(Dataset):
    """Decodes one image into the model's input tensor, its thumbnail and its content hash.

    ``geometry`` resizes and crops (the model's view); ``to_tensor`` normalises. A file that does
    not decode returns the reason instead, so the collate function can name it as skipped.
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

    def __getitem__(self, i: int) -> tuple[ProbeImage, torch.Tensor | None, LoadedImage | str]:
        probe = self.images[i]
        try:
            data = (self.root / probe.path).read_bytes()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = Image.open(io.BytesIO(data))
                image.load()
            image = as_rgb(image)
        except Image.DecompressionBombError:
            return probe, None, (f"over Pillow's limit of {Image.MAX_IMAGE_PIXELS} pixels; "
                                 "raise it with --max-image-pixels N if you trust the file")
        except UnidentifiedImageError:
            return probe, None, "not an image Pillow can identify"
        except (OSError, ValueError) as error:
            return probe, None, str(error).splitlines()[0] if str(error) else type(error).__name__
        view = self.geometry(image)
        loaded = LoadedImage(
            index=probe.index,
            sha256=hashlib.sha256(data).hexdigest(),
            width=image.width,
            height=image.height,
            thumbnail=encode_thumbnail(view) if self.thumbnails else b"",
        )
        return probe, self.to_tensor(view), loaded


def _collate(items: list[tuple[ProbeImage, torch.Tensor | None, LoadedImage | str]]) -> Batch:
    good = [(tensor, image) for _, tensor, image in items if isinstance(image, LoadedImage)]
    skipped = [f"{p.path} ({reason})" for p, _, reason in items if isinstance(reason, str)]
    pixels = torch.stack([t for t, _ in good]) if good else torch.empty(0)
    return Batch(pixels=pixels, images=[image for _, image in good], skipped=skipped)


PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_CHECK_SECONDS = 1.0


def _die_with_parent(parent: int, worker_id: int) -> None:
    """Worker initializer: the decoding worker ends when the job that started it ends, even by ``kill -9``.

    Without this, a worker blocked handing a finished batch to a parent that is gone lived on for
    good (seen: 576 MB, 25 minutes). On Linux the kernel kills it when its parent dies (prctl
    PR_SET_PDEATHSIG); everywhere a daemon thread also checks the parent's pid each second.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def iterate_batches(
    dataset: ProbeDataset, batch_size: int, workers: int
) -> Iterator[Batch]:
    """Batches in file order; decoding happens in ``workers`` background processes that die with this one."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
        worker_init_fn=functools.partial(_die_with_parent, os.getpid()) if workers else None,
    )
    yield from loader
