"""Benchmark: the ablation evaluator's peak memory does not grow with the number of labelled images.

Runs, in a fresh process each, what ``ablate`` and ``edit`` do with the probe set: read the labelled
images once in batches (the prefix before the ablated layer cached in a temporary file), then
evaluate top-1 accuracy with no units and with half of blocks.6's units switched off. Prints the
peak RSS for the first quarter of the images and for all of them (goal: within 10%).

Usage: python bench/bench_ablation_memory.py [--images DIR] [--layer blocks.6]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "imagenet-samples"


def evaluate(images: Path, max_images: int, layer: str) -> None:
    """The child process: the evaluator over ``max_images`` images, two evaluations."""
    sys.path.insert(0, str(ROOT))
    from milan_core.applications.evaluation import AblationEvaluator, load_labelled_probe
    from milan_core.models import load_model

    model = load_model("efficientnet-lite0")
    evaluator = AblationEvaluator(model, load_labelled_probe(images, model, max_images), [layer])
    before, after = evaluator.accuracy({}), evaluator.accuracy({layer: list(range(0, 320, 2))})
    print(f"{len(evaluator.probe.images)} images: top-1 {before:.3f}, {after:.3f} with half of {layer} off")


def peak_rss_mb(images: Path, max_images: int, layer: str) -> float:
    command = [sys.executable, __file__, "--images", str(images), "--layer", layer, "--child", str(max_images)]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"the evaluation failed with status {status}")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--layer", default="blocks.6")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        evaluate(args.images, args.child, args.layer)
        return
    total = len([p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")])
    small = max(1, total // 4)
    rss_small, rss_all = (peak_rss_mb(args.images, n, args.layer) for n in (small, total))
    print(f"peak RSS of the ablation evaluator: {rss_small:.0f} MB for {small} images, {rss_all:.0f} MB for "
          f"{total} images ({100 * (rss_all - rss_small) / rss_small:+.1f}%; goal within 10%)")


if __name__ == "__main__":
    main()
