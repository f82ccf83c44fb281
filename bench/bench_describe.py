"""Benchmark of the description stage: its time against the dissection's, stage by stage.

Dissects the default model (EfficientNet-Lite0) over a probe folder (default
../shared/data/imagenet-samples) at ``blocks.2``-``blocks.6``, or copies a catalog given with
``--catalog``, then describes it with the default ``evidence`` describer as ``describe`` does, and
prints the wall time of each stage (the views, the eye, its regions' classes, the attributes, the
parts with the face and text detectors and their overlaps), the whole description, the dissection
and their ratio (goal: at most 1), with the machine's load average before and after: on a shared
machine the other jobs' load moves every wall time, so the CPU times of both (this process and its
finished children, when the bench dissects) and their ratio are printed too.

Usage: python bench/bench_describe.py [--images DIR] [--catalog FILE] [--max-images N] [--out FILE]
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from milan_core.catalog import Catalog  # noqa: E402
from milan_core.catalog.migrate import migrate  # noqa: E402
from milan_core.config import DissectConfig  # noqa: E402
from milan_core.describe import base, evidence, parts  # noqa: E402
from milan_core.describe.command import describe_run  # noqa: E402
from milan_core.dissect import dissect  # noqa: E402

DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "imagenet-samples"
LAYERS = ("blocks.2", "blocks.3", "blocks.4", "blocks.5", "blocks.6")
#: (module, function, label): the stages timed, in the order describe runs them.
STAGES = (
    (base.RunView, "views", "views (decode and crop)"),
    (evidence, "see", "eye (Lite2 feature maps)"),
    (evidence, "region_class_probabilities", "eye classes of the regions"),
    (evidence, "measure", "attributes in the masks"),
    (evidence, "part_candidates", "parts, all of it:"),
    (parts, "detect", "  face and text detectors"),
    (parts, "animal_maps", "  animal heads (CAM)"),
    (parts, "overlaps", "  overlaps with the masks"),
)


def timed(function: Callable[..., Any], seconds: dict[str, float], label: str) -> Callable[..., Any]:
    """``function``, adding the wall time of each call to ``seconds[label]``."""
    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - started

    return run


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the dissection's decoding workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--catalog", type=Path, help="a dissected catalog to describe (copied) instead of dissecting")
    parser.add_argument("--max-images", type=int)
    parser.add_argument("--out", type=Path, help="keep the described catalog here (to compare descriptions)")
    args = parser.parse_args()
    print(f"before: {load()} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-describe-") as workdir:
        path = Path(workdir) / "catalog.duckdb"
        cpu = cpu_seconds()
        if args.catalog:
            shutil.copy(args.catalog, path)
            migrate(path)  # the bench's own copy: an older catalog is brought forward, never the one given
        else:
            dissect(DissectConfig(images=str(args.images), layers=LAYERS, max_images=args.max_images), path)
        dissect_cpu, cpu = cpu_seconds() - cpu, cpu_seconds()
        with Catalog(path) as catalog:
            dissect_seconds = catalog.run(None).seconds
        seconds: dict[str, float] = {}
        for owner, name, label in STAGES:
            setattr(owner, name, timed(getattr(owner, name), seconds, label))
        started = time.perf_counter()
        describe_run(path, None, None)
        total, describe_cpu = time.perf_counter() - started, cpu_seconds() - cpu
        if args.out:
            shutil.copy(path, args.out)
    print(f"after: {load()}")
    for _, _, label in STAGES:
        print(f"{label:32s} {seconds.get(label, 0.0):7.1f} s")
    print(f"{'describe (with its write)':32s} {total:7.1f} s")
    print(f"{'dissect (before its write)':32s} {dissect_seconds:7.1f} s")
    print(f"ratio describe / dissect: {total / dissect_seconds:.2f}")
    if not args.catalog:
        print(f"CPU time: describe {describe_cpu:.1f} s, dissect {dissect_cpu:.1f} s (with its write), "
              f"ratio {describe_cpu / dissect_cpu:.2f}")


if __name__ == "__main__":
    main()
