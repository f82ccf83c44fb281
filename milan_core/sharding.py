"""The dissection job past one process: the probe list in N slices, one Ray task per slice.

Each task runs the one-process pass (``dissect.run_pass``) over its slice and returns the state it
kept: per-layer statistics (mergeable: ``LayerStatistics.merge``) and the exemplar images some unit
of its slice still holds. The driver merges the states in shard order, which gives the one-pass
state (top-k exactly, with ties broken by image index; the histograms bin for bin), and writes the
catalog through the one-process code path, in one transaction. Memory per shard and for the merge
is units x (k x map + bins), whatever the number of images.

Ray retries a shard whose worker died (``max_retries``); a shard that keeps failing is named with
its first and last images, and the catalog at ``--out`` is left as it was. A finished shard's state
is saved beside the catalog (``dissect.save_checkpoint``), so a rerun of the same command redoes
only the shards that had not finished. Without ``--ray-address`` a local Ray instance of the
machine's cores is started for the job and stopped after it; each shard holds its share of them.

The fixed cost of a shard is its worker's start: Ray's process imports torch, timm and the project
(4-5 CPU seconds here) before it loads the model. The driver submits the tasks as soon as Ray is up
and does nothing heavy before; the progress counter's actor lives in ``sharding_progress``, whose
process imports nothing more.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import torch
from ray.exceptions import RayError, RayTaskError
from tqdm import tqdm

from milan_core.catalog import Catalog
from milan_core.config import LOCK_WAIT, DissectConfig
from milan_core.dissect import (
    DissectionState,
    Summary,
    checkpoint_path,
    empty_state,
    keep_exemplar_images,
    load_checkpoint,
    load_dissected,
    prepare,
    probe_signature,
    run_pass,
    save_checkpoint,
    write_state,
)
from milan_core.errors import UserError
from milan_core.images import ProbeImage
from milan_core.runtime import layer_forward, resolve_device, statistics_device
from milan_core.sharding_progress import Progress
from milan_core.statistics import HISTOGRAM_BINS

SHARD_RETRIES = 3  # attempts after the first for a shard whose worker process died
POLL_SECONDS = 0.5  # how often the driver redraws the bar while shards run


@dataclass(frozen=True)
class Shard:
    """One slice of the probe list: shard ``number`` (from 0) of ``count``, images [start, stop)."""

    number: int
    count: int
    start: int
    stop: int

    def name(self, probes: list[ProbeImage]) -> str:
        """The shard as a person finds it again: its number and its first and last images."""
        return (f"shard {self.number + 1} of {self.count} (images {probes[self.start].path} to "
                f"{probes[self.stop - 1].path})")


def split(n_images: int, count: int) -> list[Shard]:
    """``count`` contiguous slices whose sizes differ by at most one (the first ones are longer)."""
    size, extra = divmod(n_images, count)
    bounds = [number * size + min(number, extra) for number in range(count + 1)]
    return [Shard(number, count, bounds[number], bounds[number + 1]) for number in range(count)]


def shard_checkpoint_path(out: Path, run_id: str, shard: Shard) -> Path:
    """Where a finished shard's state waits for the others: beside the catalog, named after the
    run and the slicing (another ``--shards`` slices otherwise, so its states are not reused)."""
    return checkpoint_path(out, run_id).with_suffix(f".shard{shard.number + 1}of{shard.count}.resume")


@dataclass
class ShardResult:
    """What a shard's task returns: its state, the backend and device that ran the model
    (``auto`` resolves on the worker), and when (``time.time()``, the node's clock) the task's
    function began (the worker started, the project imported) and was ready to read images (the
    model loaded)."""

    state: DissectionState
    backend: str
    device: str
    entered: float
    ready: float


def dissect_shard(config: DissectConfig, root: Path, probes: list[ProbeImage], number: int, backend: str,
                  device: str, threads: int, progress: ray.actor.ActorHandle) -> ShardResult:
    """One shard's pass in a Ray worker, with as many torch threads as the CPUs its task holds."""
    entered = time.time()
    torch.set_num_threads(threads)
    on = resolve_device(device)
    loaded = load_dissected(config, on)
    with layer_forward(loaded, config.layers, backend, on, config.workers, config.precision) as forward:
        state = empty_state(loaded, config, forward, statistics_device(on))
        ready = time.time()
        run_pass(loaded, forward, root, probes, config, state,
                 progress=lambda position: progress.report.remote(number, position))
    state.layers = {name: stats.to("cpu") for name, stats in state.layers.items()}
    return ShardResult(state, forward.backend, str(on), entered, ready)


def merge_states(states: list[DissectionState]) -> DissectionState:
    """The shards' states merged in the order given (shard order): the one-pass state."""
    merged = DissectionState(layers=dict(states[0].layers), kinds=dict(states[0].kinds))
    for state in states:
        if state is not states[0]:
            merged.layers = {name: stats.merge(state.layers[name]) for name, stats in merged.layers.items()}
        merged.skipped.extend(state.skipped)
        merged.n_read += state.n_read
        keep_exemplar_images(merged, list(state.exemplar_images.values()))
    return merged


#: Said when joining a cluster fails without a token: ``ray start`` turns Ray's token authentication
#: on when the head has a token, and ``ray.init`` then raises only "failed to connect".
TOKEN_HINT = ("; if the cluster uses Ray's token authentication (`ray start` turns it on), set RAY_AUTH_MODE=token "
              "and give the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token")


def task_cpus(address: str | None, shards: int) -> int:
    """CPUs (and torch threads) a shard's task holds: on a local Ray, the machine's cores shared
    among the shards (one shard runs with the threads the one-process job has); on a cluster,
    whose nodes the driver does not know, one."""
    return max(1, (os.cpu_count() or 1) // shards) if address is None else 1


@contextmanager
def ray_cluster(address: str | None, shards: int) -> Iterator[None]:
    """Join the cluster at ``address``, or start a local instance of as many CPUs as the machine
    has cores, or shards if more (no dashboard, the workers' output kept out of the terminal);
    stop what was started. Ray's local instance listens on this machine's address, or on the
    loopback only with the environment variable ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` set before
    Ray is imported (the tests do)."""
    options: dict[str, object] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        options.update(num_cpus=max(shards, os.cpu_count() or 1), include_dashboard=False)
    if ray.is_initialized():  # a caller (a notebook, a test) already connected: use its cluster
        yield
        return
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise UserError(f"cannot join the Ray cluster at {address}: {str(error).splitlines()[0]}"
                        f"{TOKEN_HINT if os.environ.get('RAY_AUTH_MODE') != 'token' else ''}") from error
    try:
        yield
    finally:
        ray.shutdown()


def failure_message(error: RayError) -> str:
    """One line of what went wrong in a shard: the task's own exception, or the worker's death."""
    cause = error.cause if isinstance(error, RayTaskError) else error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip() and "ray::" not in line]
    return f"{type(cause).__name__}: {lines[0] if lines else 'no message'}"


@dataclass(frozen=True)
class ShardJob:
    """One sharded job as the driver sees it: the slices, and where each one's state is saved."""

    config: DissectConfig
    root: Path
    probes: list[ProbeImage]
    slices: list[Shard]
    signatures: list[str]
    paths: list[Path]

    def finished(self) -> dict[int, DissectionState]:
        """The states of the shards an earlier run of this very job finished (checkpoints beside
        the catalog made with the same parameters on the same files), by shard number."""
        found = {}
        for shard, path, signature in zip(self.slices, self.paths, self.signatures):
            resumed = load_checkpoint(path, self.config, signature)
            if resumed is not None:
                found[shard.number] = resumed[1]
        return found

    def images(self, numbers: Iterable[int]) -> int:
        return sum(self.slices[n].stop - self.slices[n].start for n in numbers)


def run_shards(job: ShardJob, states: dict[int, DissectionState], backend: str, device: str, cpus: int,
               retries: int) -> tuple[list[str], list[ShardResult]]:
    """Run the shards not in ``states`` as Ray tasks of ``cpus`` CPUs each, adding each finished
    one's state to ``states`` and saving it; (one line per shard that failed, the tasks' results).
    A user's mistake met in a shard stops everything at once, as the one-process job would."""
    task = ray.remote(num_cpus=cpus, max_retries=retries)(dissect_shard)
    progress = ray.remote(num_cpus=0)(Progress).remote()
    count = len(job.slices)
    pending = {
        task.options(name=f"dissect-shard-{shard.number + 1}-of-{count}").remote(
            job.config, job.root, job.probes[shard.start:shard.stop], shard.number, backend, device, cpus, progress,
        ): shard
        for shard in job.slices if shard.number not in states
    }
    failures, results, started = [], [], time.perf_counter()
    resumed = job.images(states)
    with tqdm(total=len(job.probes), initial=resumed, unit="img", desc=f"dissect ({count} shards)",
              dynamic_ncols=True) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                shard = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except RayError as error:
                    if isinstance(error, RayTaskError) and isinstance(error.cause, UserError):
                        raise UserError(str(error.cause)) from error
                    failures.append(f"{shard.name(job.probes)} failed: {failure_message(error)}")
                    continue
                states[shard.number] = result.state
                results.append(result)
                save_checkpoint(job.paths[shard.number], job.config, job.signatures[shard.number],
                                shard.stop - shard.start, result.state, time.perf_counter() - started)
            images = resumed + ray.get(progress.total.remote())
            if images > bar.n:
                bar.update(images - bar.n)
    return failures, results


def shard_timings(started: float, connected: float, submitted: float, passed: float,
                  results: list[ShardResult]) -> dict[str, float]:
    """The job's wall time until the merge, in stages that add up to it: ``ray`` (the driver's
    checks and Ray's start, perf-counter seconds), then, from the tasks' clocks (``time.time()``
    at ``submitted``), ``worker`` (until the last shard's function began: a worker process, its
    imports) and ``model`` (until the last shard was ready to read images), and ``pass``."""
    running = passed - connected
    entered = min(running, max(0.0, max((r.entered for r in results), default=submitted) - submitted))
    ready = min(running, max(entered, max((r.ready for r in results), default=submitted) - submitted))
    return {"ray": connected - started, "worker": entered, "model": ready - entered, "pass": running - ready}


def dissect_sharded(config: DissectConfig, out: Path, shards: int, address: str | None = None,
                    lock_wait: float = LOCK_WAIT, backend: str = "auto", device: str = "auto",
                    retries: int = SHARD_RETRIES) -> Summary:
    """``dissect`` with the pass split into ``shards`` Ray tasks; the same catalog, the same run id.

    Finished shards found beside the catalog (from an earlier, failed run of the same command) are
    not run again. A shard whose worker dies is run again up to ``retries`` times; one that still
    fails (or raises) stops the job with its images named, after the other shards have finished
    and been saved, and the catalog is not touched.
    """
    if shards < 1:
        raise UserError(f"--shards must be at least 1 (got {shards})")
    started = time.perf_counter()
    config, root, probes = prepare(config, out)
    if shards > len(probes):
        print(f"note: --shards {shards} is more than the {len(probes)} images; using {len(probes)}", file=sys.stderr)
        shards = len(probes)
    run_id, slices = config.resolved_run_id(), split(len(probes), shards)
    job = ShardJob(config, root, probes, slices, [probe_signature(root, probes[s.start:s.stop]) for s in slices],
                   [shard_checkpoint_path(out, run_id, s) for s in slices])
    states = job.finished()
    resumed_from = job.images(states)
    if states:
        print(f"resuming run {run_id}: {len(states)} of {shards} shards were done ({resumed_from} images)",
              file=sys.stderr)
    with ray_cluster(address, shards):
        connected_at, submitted = time.perf_counter(), time.time()
        failures, results = run_shards(job, states, backend, device, task_cpus(address, shards), retries)
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        kept = f"; the {len(states)} finished shard(s) are kept beside {out}, so the same command redoes only the rest"
        raise UserError(f"{failures[0]}{more}{kept if states else ''}; {out} was not changed")
    passed_at = time.perf_counter()
    state = merge_states([states[shard.number] for shard in slices])
    timings = {**shard_timings(started, connected_at, submitted, passed_at, results),
               "merge": time.perf_counter() - passed_at}
    runtime = {"backend": ",".join(sorted({r.backend for r in results})) or backend,
               "device": ",".join(sorted({r.device for r in results})) or device, "shards": str(shards)}
    summary = write_state(config, out, root, probes, state, timings, runtime, lock_wait,
                          lambda: job.paths[0].parent, resumed_from)
    for path in job.paths:
        path.unlink(missing_ok=True)
    return summary


def catalog_differences(expected: Path, got: Path, run_id: str | None = None) -> list[str]:
    """How run ``run_id`` (None: the newest) of ``got`` differs from the same run of ``expected``,
    as the sharded job promises it does not: the same run id, units and exemplars (image, rank),
    activations and means to float rounding, thresholds within one histogram bin (the finest
    width fitting the unit's range in ``HISTOGRAM_BINS`` bins, at most twice range / bins)."""
    with Catalog(expected) as one, Catalog(got) as other:
        run, other_run = one.run(run_id), other.run(run_id)
        units, other_units = one.units(run.run_id), other.units(other_run.run_id)
        exemplars, other_exemplars = one.run_exemplars(run.run_id), other.run_exemplars(other_run.run_id)
    if other_run.run_id != run.run_id:
        return [f"run id {other_run.run_id} instead of {run.run_id}"]
    if not other_units[["layer", "unit"]].equals(units[["layer", "unit"]]):
        return [f"{len(other_units)} units instead of {len(units)}, or in another order"]
    found = []
    keys = ["layer", "unit", "rank", "path"]
    if not other_exemplars[keys].equals(exemplars[keys]):
        changed = (other_exemplars[keys] != exemplars[keys]).any(axis=1) if len(other_exemplars) == len(exemplars) \
            else np.ones(1, dtype=bool)
        found.append(f"{int(changed.sum())} exemplars differ in image or rank")
    elif not np.allclose(other_exemplars.activation, exemplars.activation, rtol=1e-4, atol=1e-6):
        found.append("exemplar activations differ beyond float rounding")
    bin_width = 2 * (units.act_max - units.act_min).to_numpy() / HISTOGRAM_BINS + 1e-6
    off = np.abs(other_units.threshold.to_numpy() - units.threshold.to_numpy()) > bin_width
    if off.any():
        found.append(f"{int(off.sum())} thresholds differ by more than a histogram bin")
    if not np.allclose(other_units.act_mean, units.act_mean, rtol=1e-4, atol=1e-6):
        found.append("unit means differ beyond float rounding")
    return found
