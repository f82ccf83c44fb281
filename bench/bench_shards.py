"""Benchmark of ``dissect --shards``: wall time against the one-process job, and what scale-out costs.

Runs the command line (a fresh process each, as a person would) on the same images and layers:
- the plain job with ``--workers 1`` on each backend (torch, onnxruntime): the current job;
- ``--shards 2`` and ``--shards 1`` (a local Ray started by the command, on the loopback only) on
  ``--backend`` (the same backend as the plain job each is compared with);
and prints each wall time, the ratios (goals: 2 shards <= 0.75x the plain job, 1 shard <= 1.15x),
whether each sharded catalog is identical to the plain one (``sharding.catalog_differences``), the
per-image cost and the merge cost (from the runs' recorded timings), and the projection to ImageNet
val (50,000 images) on 8 and 64 workers of one core each, from those costs.

Usage: python bench/bench_shards.py [--images DIR] [--max-images N] [--backend onnxruntime]
                                    [--shard-workers 0]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from milan_core.catalog import Catalog  # noqa: E402
from milan_core.config import DEFAULT_LAYERS  # noqa: E402
from milan_core.sharding import catalog_differences  # noqa: E402

DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "imagenet-samples"
IMAGENET_VAL = 50_000
PROJECTED_WORKERS = (8, 64)


def run_job(images: Path, out: Path, max_images: int | None, backend: str, workers: int,
            shards: int | None = None) -> tuple[float, dict[str, float], int]:
    """(wall seconds of the whole command, the run's recorded timings with its write, images read)."""
    command = [sys.executable, "-m", "milan_core", "dissect", "--images", str(images), "--out", str(out),
               "--layers", ",".join(DEFAULT_LAYERS), "--backend", backend, "--workers", str(workers)]
    command += ["--max-images", str(max_images)] if max_images else []
    command += ["--shards", str(shards)] if shards else []
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    wall = time.perf_counter() - started
    with Catalog(out) as catalog:
        run = catalog.run()
    # The run records its timings before its write; the command's closing line counts the write too.
    total = float(re.search(r"read \d+ images in ([\d.]+) s", done.stdout).group(1))
    return wall, {**run.timings, "write": max(0.0, total - sum(run.timings.values()))}, run.n_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--max-images", type=int, default=None, help="a quick run on the first N images")
    parser.add_argument("--backend", default="onnxruntime", choices=("torch", "onnxruntime"),
                        help="backend of the sharded runs and of the plain job they are compared with")
    parser.add_argument("--shard-workers", type=int, default=0,
                        help="--workers (decoding processes) of each shard (a shard holds one CPU)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as folder:
        work = Path(folder)
        plain = {}
        for backend in ("torch", "onnxruntime"):
            plain[backend] = run_job(args.images, work / f"plain-{backend}.duckdb", args.max_images, backend, 1)
            print(f"plain job, {backend}, --workers 1: {plain[backend][0]:.1f} s wall "
                  f"({plain[backend][2]} images; recorded {fmt(plain[backend][1])})", flush=True)
        sharded = {}
        for shards in (2, 1):
            out = work / f"shards-{shards}.duckdb"
            sharded[shards] = run_job(args.images, out, args.max_images, args.backend, args.shard_workers, shards)
            differences = catalog_differences(work / f"plain-{args.backend}.duckdb", out)
            print(f"--shards {shards}, {args.backend}, --workers {args.shard_workers} a shard: "
                  f"{sharded[shards][0]:.1f} s wall (recorded {fmt(sharded[shards][1])}); catalog "
                  f"{'identical to the plain one' if not differences else 'DIFFERS: ' + '; '.join(differences)}",
                  flush=True)
    base, n = plain[args.backend][0], plain[args.backend][2]
    print(f"ratio onnxruntime / torch plain job: {plain['onnxruntime'][0] / plain['torch'][0]:.2f}")
    print(f"ratio --shards 2 / plain ({args.backend}): {sharded[2][0] / base:.2f} (goal <= 0.75)")
    print(f"ratio --shards 1 / plain ({args.backend}): {sharded[1][0] / base:.2f} (goal <= 1.15)")
    project(n, sharded[1], sharded[2], plain[args.backend])


def fmt(timings: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())


def project(n: int, one: tuple[float, dict[str, float], int], two: tuple[float, dict[str, float], int],
            plain: tuple[float, dict[str, float], int]) -> None:
    """The scale-out on paper: a fixed start (Ray, the workers' model load: the one-shard run's
    wall time less its per-image work), per-image work divided among the workers, one merge per
    shard (the two-shard run's merge over 2) and the catalog write."""
    per_image = plain[1]["pass"] / n  # one process, one core for the model (the plain job's pass)
    start = one[0] - per_image * n - one[1].get("merge", 0.0) - one[1].get("write", 0.0)
    merge = two[1]["merge"] / 2
    write = plain[1].get("write", 0.0)
    print(f"per-image cost {per_image * 1000:.1f} ms (plain pass / images), merge {merge * 1000:.1f} ms a shard, "
          f"fixed start {start:.1f} s (one shard's wall less its images, merge and write), write {write:.1f} s")
    for workers in PROJECTED_WORKERS:
        total = start + IMAGENET_VAL * per_image / workers + workers * merge + write
        print(f"projected ImageNet val ({IMAGENET_VAL} images) on {workers} workers: {total:.0f} s "
              f"({IMAGENET_VAL * per_image / workers:.0f} s of images, {workers * merge:.1f} s of merges)")


if __name__ == "__main__":
    main()
