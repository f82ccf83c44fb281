"""Benchmark of the dissection job: speed against a bare forward pass, memory, and catalog size.

Prints, for the default model and layers on a probe folder (default ../shared/data/imagenet-samples):
- for each backend (torch, onnxruntime), the wall time of a bare forward pass (same images, batch
  size and data loading, no statistics) and of the full job (taps, statistics, thumbnails, catalog
  write), all measured in one run, and the ratios: job / bare per backend (goal: at most 1.15) and
  the ONNX Runtime job / the torch job (goal: at most 0.5); and the decoding alone (the loader
  with thumbnails, no model), which bounds the fast backend from below;
- the peak RSS of the job on the first 250 and on all 1000 images, each in a fresh process
  (goal: within 10% of each other);
- the catalog's bytes per unit, with and without thumbnails (goal: at most 5 KB without).

Usage: python bench/bench_dissect.py [--images DIR] [--batch-size 32] [--workers 1] [--repeats 2] [--speed-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from milan_core.catalog import Catalog  # noqa: E402
from milan_core.config import BATCH_SIZE, WORKERS, DissectConfig  # noqa: E402
from milan_core.dissect import dissect, empty_state  # noqa: E402
from milan_core.images import ProbeDataset, find_images, iterate_batches  # noqa: E402
from milan_core.models import load_model  # noqa: E402
from milan_core.runtime import model_threads, onnx_forward  # noqa: E402

BACKENDS = ("torch", "onnxruntime")

DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "imagenet-samples"


def state_megabytes() -> float:
    """Size of the per-unit statistics the job keeps (fixed by units, k, map sizes and bins)."""
    loaded = load_model("efficientnet-lite0")
    state = empty_state(loaded, DissectConfig())
    tensors = [t for stats in state.layers.values() for part in stats.state().values() if isinstance(part, dict)
               for t in part.values()]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the loader's workers): less moved than
    wall time by the other jobs on a shared machine."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, cpu_seconds() - self.cpu


def bare_forward_seconds(images: Path, batch_size: int, workers: int, backend: str) -> Clock:
    """The physical floor: decode, preprocess and run the model, nothing else (for ONNX Runtime,
    the job's own graph, with its layers as outputs, exported before the clock starts)."""
    loaded = load_model("efficientnet-lite0")
    run = loaded.module
    if backend == "onnxruntime":
        run = onnx_forward(loaded, DissectConfig().layers, model_threads(workers)).raw
    probes = find_images(images)
    dataset = ProbeDataset(images, probes, loaded.preprocessing.geometry, loaded.preprocessing.to_tensor,
                           thumbnails=False)
    with Clock() as clock, torch.inference_mode():
        for batch in iterate_batches(dataset, batch_size, workers):
            run(batch.pixels)
    return clock


def decode_seconds(images: Path, batch_size: int, workers: int) -> Clock:
    """The loader alone, as the job runs it (view, tensor, thumbnail, hash): no model."""
    preprocessing = load_model("efficientnet-lite0").preprocessing
    dataset = ProbeDataset(images, find_images(images), preprocessing.geometry, preprocessing.to_tensor)
    with Clock() as clock:
        for _ in iterate_batches(dataset, batch_size, workers):
            pass
    return clock


def job_seconds(images: Path, batch_size: int, workers: int, out: Path, backend: str = "auto") -> Clock:
    """The whole job as a user runs it, model loading and catalog writing included."""
    config = DissectConfig(images=str(images), batch_size=batch_size, workers=workers)
    with Clock() as clock:
        dissect(config, out, backend=backend)
    return clock


def _runs(clocks: list[Clock]) -> str:
    return (f"{min(c.wall for c in clocks):.1f} s wall (runs: {', '.join(f'{c.wall:.1f}' for c in clocks)}), "
            f"{min(c.cpu for c in clocks):.1f} s CPU")


def peak_rss_mb(images: Path, max_images: int, batch_size: int, workers: int, out: Path) -> float:
    """Peak resident memory of a fresh `dissect` process (the job and its loader workers)."""
    command = [sys.executable, "-m", "milan_core", "dissect", "--images", str(images), "--out", str(out),
               "--max-images", str(max_images), "--batch-size", str(batch_size), "--workers", str(workers)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"dissect failed with status {status}")
    return usage.ru_maxrss / 1024


def catalog_bytes(path: Path) -> tuple[int, int, int]:
    """(file bytes, thumbnail bytes, units) of a catalog."""
    with Catalog(path) as catalog:
        return path.stat().st_size, catalog.thumbnail_bytes(), catalog.unit_count()


def marginal_bytes_per_unit(images: Path, out: Path, extra_runs: int = 3, max_images: int = 100) -> float:
    """File growth per unit when more runs over the same images are added.

    The images (and their thumbnails) are stored once, so the growth is what a unit itself costs:
    its statistics row and its k exemplars with their maps, without DuckDB's fixed overhead
    (256 KB blocks, metadata), which dominates the file of a single small run.
    """
    config = DissectConfig(images=str(images), max_images=max_images, workers=0)
    dissect(config, out)
    first, _, units = catalog_bytes(out)
    for number in range(extra_runs):
        dissect(DissectConfig(images=str(images), max_images=max_images, workers=0, run_id=f"extra-{number}"), out)
    return (out.stat().st_size - first) / (units * extra_runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed runs of each")
    parser.add_argument("--speed-only", action="store_true", help="skip the catalog-size and memory figures")
    args = parser.parse_args()
    n_images = len(find_images(args.images))
    print(f"probe set: {args.images} ({n_images} images), batch {args.batch_size}, workers {args.workers}, "
          f"torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.duckdb"
        onnx_forward(load_model("efficientnet-lite0"), DissectConfig().layers)  # export (once) off the clock
        bare: dict[str, list[Clock]] = {b: [] for b in BACKENDS}
        job: dict[str, list[Clock]] = {b: [] for b in BACKENDS}
        decode: list[Clock] = []
        for _ in range(args.repeats):
            for backend in BACKENDS:
                bare[backend].append(bare_forward_seconds(args.images, args.batch_size, args.workers, backend))
                job[backend].append(job_seconds(args.images, args.batch_size, args.workers, out, backend))
                print(f"{backend:12s} bare forward pass: {_runs(bare[backend][-1:])}", flush=True)
                print(f"{backend:12s} full dissect job:  {_runs(job[backend][-1:])}", flush=True)
            decode.append(decode_seconds(args.images, args.batch_size, args.workers))
        print(f"decoding alone (loader with thumbnails, no model): {_runs(decode)}")
        for kind in ("wall", "cpu"):
            best = {b: (min(getattr(c, kind) for c in bare[b]), min(getattr(c, kind) for c in job[b]))
                    for b in BACKENDS}
            for backend in BACKENDS:
                ratio = best[backend][1] / best[backend][0]
                print(f"{backend:12s} ratio job / bare ({kind}):  {ratio:.3f} (best of each; goal <= 1.15)")
            ratio = best["onnxruntime"][1] / best["torch"][1]
            print(f"ratio onnxruntime job / torch job ({kind}): {ratio:.3f} (goal <= 0.5)")
        if args.speed_only:
            return
        size, thumbs, units = catalog_bytes(out)
        print(f"catalog file: {size} bytes, {units} units: {size / units:.0f} B/unit; "
              f"{(size - thumbs) / units:.0f} B/unit without the {thumbs} B of thumbnails")
        marginal = marginal_bytes_per_unit(args.images, Path(tmp) / "marginal.duckdb")
        print(f"bytes per unit, thumbnails aside (file growth per unit over 3 more runs): {marginal:.0f} B "
              "(goal <= 5 KB)")
        small = max(1, n_images // 4)
        rss_small = peak_rss_mb(args.images, small, args.batch_size, args.workers, Path(tmp) / "rss1.duckdb")
        rss_all = peak_rss_mb(args.images, n_images, args.batch_size, args.workers, Path(tmp) / "rss2.duckdb")
        print(f"statistics state kept by the job: {state_megabytes():.1f} MB, whatever the number of images")
        print(f"peak RSS: {rss_small:.0f} MB for {small} images, {rss_all:.0f} MB for {n_images} images "
              f"({100 * (rss_all - rss_small) / rss_small:+.1f}%; goal within 10%)")


if __name__ == "__main__":
    main()
