"""Benchmark of ``dissect --shards``: wall time against the one-process job, and what scale-out costs.

Runs the command line (a fresh process each, as a person would) on the same images and layers, for
each backend (torch, onnxruntime):
- the plain job with ``--workers 1``: the current job, with its defaults;
- ``--shards 2`` and ``--shards 1`` (a local Ray started by the command, on the loopback only) on
  the same backend, ``--shard-workers`` decoding processes a shard;
and prints each job's wall time, its CPU seconds (the command and the processes it waited for:
user + system, so the cores it kept busy) and its recorded stage timings; per backend the ratios
(goals: 2 shards <= 0.75x the plain job, 1 shard <= 1.15x) and whether each sharded catalog is
identical to that backend's plain one (``sharding.catalog_differences``); then the per-image
cost, the merge cost and the fixed start (from the ``--projection-backend`` runs' recorded
timings), and the projection to ImageNet val (50,000 images) on 8 and 64 workers.

Usage: python bench/bench_shards.py [--images DIR] [--max-images N] [--shard-workers 1]
                                    [--projection-backend onnxruntime]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from milan_core.catalog import Catalog  # noqa: E402
from milan_core.config import DEFAULT_LAYERS  # noqa: E402
from milan_core.sharding import catalog_differences  # noqa: E402

DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "imagenet-samples"
IMAGENET_VAL = 50_000
PROJECTED_WORKERS = (8, 64)
BACKENDS = ("torch", "onnxruntime")
CPU_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Job:
    """One command's measured run."""

    wall: float  # seconds, the whole command
    cpu: float  # user + system seconds of the command and every process under it (Ray's, the shards')
    timings: dict[str, float]  # the run's recorded stages, with the write
    n_images: int


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree_cpu(root: int, seen: dict[int, float]) -> None:
    """Record in ``seen`` the CPU seconds so far of ``root`` and of every process under it.

    Polled while the command runs: Ray's workers are not waited for by the command, so their
    time never reaches its resource usage; a process's last poll undercounts it by one period."""
    parents, cpu = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    for pid in cpu:
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            seen[pid] = max(seen.get(pid, 0.0), cpu[pid])


def run_job(images: Path, out: Path, max_images: int | None, backend: str, workers: int,
            shards: int | None = None) -> Job:
    """Run one ``dissect`` command, its CPU time polled, and read back what it recorded."""
    command = [sys.executable, "-m", "milan_core", "dissect", "--images", str(images), "--out", str(out),
               "--layers", ",".join(DEFAULT_LAYERS), "--backend", backend, "--workers", str(workers)]
    command += ["--max-images", str(max_images)] if max_images else []
    command += ["--shards", str(shards)] if shards else []
    started, seen = time.perf_counter(), {}
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}) as job:
        while True:
            process_tree_cpu(job.pid, seen)
            try:
                stdout, stderr = job.communicate(timeout=CPU_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                continue
    wall = time.perf_counter() - started
    if job.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    with Catalog(out) as catalog:
        run = catalog.run()
    # The run records its timings before its write; the command's closing line counts the write too.
    total = float(re.search(r"read \d+ images in ([\d.]+) s", stdout).group(1))
    return Job(wall, sum(seen.values()), {**run.timings, "write": max(0.0, total - sum(run.timings.values()))},
               run.n_images)


def describe_job(name: str, job: Job) -> str:
    stages = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in job.timings.items())
    return (f"{name}: {job.wall:.1f} s wall, {job.cpu:.1f} CPU s ({job.cpu / job.wall:.2f} cores busy); "
            f"recorded {stages}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--max-images", type=int, default=None, help="a quick run on the first N images")
    parser.add_argument("--shard-workers", type=int, default=1,
                        help="--workers (decoding processes) of each shard")
    parser.add_argument("--projection-backend", default="onnxruntime", choices=BACKENDS,
                        help="backend whose measured costs the ImageNet-val projection uses")
    args = parser.parse_args()
    plain, sharded = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as folder:
        work = Path(folder)
        for backend in BACKENDS:
            reference = work / f"plain-{backend}.duckdb"
            plain[backend] = run_job(args.images, reference, args.max_images, backend, 1)
            print(describe_job(f"plain job, {backend}, --workers 1", plain[backend]), flush=True)
            for shards in (2, 1):
                out = work / f"shards-{shards}-{backend}.duckdb"
                job = sharded[backend, shards] = run_job(args.images, out, args.max_images, backend,
                                                         args.shard_workers, shards)
                differences = catalog_differences(reference, out)
                identity = "identical to the plain one" if not differences else "DIFFERS: " + "; ".join(differences)
                print(describe_job(f"--shards {shards}, {backend}, --workers {args.shard_workers} a shard", job)
                      + f"; catalog {identity}", flush=True)
    print(f"ratio onnxruntime / torch plain job: {plain['onnxruntime'].wall / plain['torch'].wall:.2f}")
    for backend in BACKENDS:
        base = plain[backend].wall
        print(f"{backend}: --shards 2 / plain {sharded[backend, 2].wall / base:.2f} (goal <= 0.75), "
              f"--shards 1 / plain {sharded[backend, 1].wall / base:.2f} (goal <= 1.15)")
    backend = args.projection_backend
    project(plain[backend], sharded[backend, 1], sharded[backend, 2])


def project(plain: Job, one: Job, two: Job) -> None:
    """The scale-out on paper: a fixed start (Ray, the workers' start and model load: the one-shard
    run's wall time less its per-image work, merge and write), per-image work divided among the
    workers, one merge per shard (the two-shard run's merge over 2) and the catalog write."""
    per_image = plain.timings["pass"] / plain.n_images  # one process, the plain job's pass
    start = one.wall - per_image * one.n_images - one.timings.get("merge", 0.0) - one.timings.get("write", 0.0)
    merge = two.timings["merge"] / 2
    write = plain.timings.get("write", 0.0)
    print(f"per-image cost {per_image * 1000:.1f} ms (plain pass / images), merge {merge * 1000:.1f} ms a shard, "
          f"fixed start {start:.1f} s (one shard's wall less its images, merge and write), write {write:.1f} s")
    for workers in PROJECTED_WORKERS:
        total = start + IMAGENET_VAL * per_image / workers + workers * merge + write
        print(f"projected ImageNet val ({IMAGENET_VAL} images) on {workers} workers: {total:.0f} s "
              f"({IMAGENET_VAL * per_image / workers:.0f} s of images, {workers * merge:.1f} s of merges)")

if __name__ == "__main__":
    main()
