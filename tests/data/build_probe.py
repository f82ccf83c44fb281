"""Build the test suite's own probe set from the photos scikit-image ships in its wheel.

    python tests/data/build_probe.py        # rewrites tests/data/probe

``probe/``: 36 small JPEGs under ImageNet-style names (``n02123159_tiger-cat_3.jpg``): six
photos whose ImageNet class is honest (a striped cat, a horse, an espresso, a missile, a moped, a
tripod), each in a few deterministic views (the whole photo, a mirror image, crops), so
label-dependent code (ablation accuracy, class checks) has real labels and a trained model gets
most of them right.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import skimage
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
SOURCE = Path(skimage.__file__).parent / "data"
SIDE = 224  # long side of a probe photo: about the model's view, and the files stay small
QUALITY = 80

# photo file -> (WordNet id, ImageNet class name, number of views)
PHOTOS = {
    "chelsea.png": ("n02124075", "Egyptian-cat", 8),
    "horse.png": ("n02389026", "sorrel", 4),
    "coffee.png": ("n07920052", "espresso", 6),
    "rocket.jpg": ("n03773504", "missile", 6),
    "motorcycle_left.png": ("n03785016", "moped", 6),
    "camera.png": ("n04485082", "tripod", 6),
}


def views(image: Image.Image, count: int) -> list[Image.Image]:
    """``count`` deterministic views of a photo: whole, mirrored, then crops of 70-85 %."""
    w, h = image.size
    crops = [(0, 0, 0.8, 1), (0.2, 0, 1, 1), (0.1, 0.1, 0.9, 0.9), (0, 0.15, 0.85, 1), (0.15, 0, 1, 0.85),
             (0.05, 0.05, 0.75, 0.95)]
    made = [image, ImageOps.mirror(image)]
    made += [image.crop((int(a * w), int(b * h), int(c * w), int(d * h))) for a, b, c, d in crops]
    return made[:count]


def small(image: Image.Image) -> Image.Image:
    image = image.copy()
    image.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
    return image


def build_probe(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, (wnid, label, count) in PHOTOS.items():
        photo = Image.open(SOURCE / name).convert("RGB")
        for i, view in enumerate(views(photo, count)):
            small(view).save(folder / f"{wnid}_{label}_{i}.jpg", quality=QUALITY, optimize=True)


if __name__ == "__main__":
    build_probe(HERE / "probe")
