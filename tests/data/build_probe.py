"""Build the test suite's own probe set from the photos scikit-image ships in its wheel.

    python tests/data/build_probe.py        # rewrites tests/data/probe and tests/data/segmentation

``probe/``: 36 small JPEGs under ImageNet-style names (``n02123159_tiger-cat_3.jpg``): six
photos whose ImageNet class is honest (a striped cat, a horse, an espresso, a missile, a moped, a
tripod), each in a few deterministic views (the whole photo, a mirror image, crops), so
label-dependent code (ablation accuracy, class checks) has real labels and a trained model gets
most of them right. ``segmentation/``: photos in the coco128-seg layout (``images/``,
``masks/`` with class-index PNGs, ``classes.yaml`` with COCO panoptic ids) whose masks are exact
because the images are made from them: scikit-image's horse silhouette laid on its grass, gravel
and brick textures.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
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
# COCO panoptic ids (as in coco128-seg's classes.yaml)
SEGMENTATION_CLASSES = {0: "unlabeled", 19: "horse", 125: "gravel", 171: "wall-brick", 193: "grass-merged"}
BACKGROUNDS = {"grass.png": 193, "gravel.png": 125, "brick.png": 171}


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


def build_segmentation(folder: Path) -> None:
    """Six horse-on-texture photos and their exact class-index masks."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    horse = np.array(Image.open(SOURCE / "horse.png").convert("L")) < 128
    for b, (background, class_id) in enumerate(BACKGROUNDS.items()):
        texture = np.array(Image.open(SOURCE / background).convert("RGB").resize((200, 200)))
        for flipped in (False, True):
            shape = np.array(Image.fromarray(horse).resize((150, 123), Image.Resampling.NEAREST))
            shape = shape[:, ::-1] if flipped else shape
            mask = np.full((200, 200), class_id, dtype=np.uint8)
            top, left = 30 + 20 * b, 25 if flipped else 20
            region = mask[top:top + 123, left:left + 150]
            region[shape] = 19
            photo = texture.copy()
            colour = np.array([120, 70, 35], dtype=np.uint8)  # a sorrel horse
            photo[mask == 19] = colour
            stem = f"{Path(background).stem}_{'right' if flipped else 'left'}"
            Image.fromarray(photo).save(folder / "images" / f"{stem}.jpg", quality=QUALITY)
            Image.fromarray(mask, mode="L").save(folder / "masks" / f"{stem}.png", optimize=True)
    lines = ["# COCO panoptic ids, as in coco128-seg's classes.yaml", "classes:"]
    lines += [f"  {i}: {name}" for i, name in SEGMENTATION_CLASSES.items()]
    (folder / "classes.yaml").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    build_probe(HERE / "probe")
    build_segmentation(HERE / "segmentation")
