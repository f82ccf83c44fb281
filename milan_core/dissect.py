"""The dissection job: images -> model with hooks -> streaming statistics -> exemplars -> catalog.

One pass over the probe set. The per-unit state (top-k with their maps, histogram, moments) is
all that is kept, so memory does not grow with the number of images; the catalog is written in
one transaction at the end, so an interrupted job leaves the file as it was. That state is also
saved beside the catalog every ``checkpoint_every`` seconds, at a batch boundary, and a rerun of
the same job on the same files goes on from there: the updates are the same ones in the same
order, so a resumed run gives the catalog an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import milan_core
from milan_core.cache import read_cached, write_cached
from milan_core.catalog import Catalog, RunRecord, RunTables, RunWrite, check_writable
from milan_core.config import CHECKPOINT_EVERY, LOCK_WAIT, DissectConfig
from milan_core.errors import UserError
from milan_core.exemplars import quantise
from milan_core.hooks import as_spatial, layer_kind
from milan_core.images import (
    Batch,
    LoadedImage,
    ProbeDataset,
    ProbeImage,
    default_probe_root,
    first_images,
    iterate_batches,
)
from milan_core.models import LoadedModel, load_model
from milan_core.runtime import PRECISIONS, LayerForward, layer_forward, resolve_device, statistics_device
from milan_core.statistics import LayerStatistics

PLOT_BINS = 32
CHECKPOINT_FORMAT = 1


@dataclass
class DissectionState:
    """Everything the pass keeps: per-layer statistics and the exemplar images seen so far."""

    layers: dict[str, LayerStatistics]
    kinds: dict[str, str]
    exemplar_images: dict[int, LoadedImage] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    n_read: int = 0


@dataclass(frozen=True)
class Summary:
    """What the job did, for the closing lines on the terminal and for tests."""

    run_id: str
    n_images: int
    skipped: list[str]
    n_units: int
    catalog_bytes: int
    seconds: float
    resumed_from: int = 0  # images already read by an interrupted run of the same job
    written: RunWrite = field(default_factory=RunWrite)  # what replacing an earlier run did


def code_version() -> str:
    """The package version and, inside a git checkout, the commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return f"{milan_core.__version__}+{commit}" if commit else milan_core.__version__


def validate(config: DissectConfig) -> None:
    """Parameter checks that would otherwise fail deep inside the pass."""
    if config.k < 1:
        raise UserError("--k must be at least 1")
    if not 0.0 < config.quantile < 1.0:
        raise UserError("--quantile must be between 0 and 1, e.g. 0.99 (MILAN) or 0.995 (Network Dissection)")
    if config.batch_size < 1 or config.workers < 0:
        raise UserError("--batch-size must be at least 1 and --workers at least 0")
    if not config.layers:
        raise UserError("give at least one layer with --layers (list them with the layers command)")
    if config.precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, not {config.precision!r}")


def empty_state(loaded: LoadedModel, config: DissectConfig, forward: LayerForward,
                device: torch.device | None = None) -> DissectionState:
    """Size the per-layer statistics (kept on ``device``) from one forward pass of a blank image."""
    with torch.inference_mode():
        outputs = forward.blank(loaded.preprocessing.input_size)
    stats, kinds = {}, {}
    for name in config.layers:
        if name not in outputs:
            raise UserError(f"layer {name} produced no tensor output; pick another with the layers command")
        maps = as_spatial(outputs[name], loaded.module)
        stats[name] = LayerStatistics.empty(maps.shape[1], config.k, maps.shape[2], maps.shape[3], device=device)
        kinds[name] = layer_kind(outputs[name])
    return DissectionState(stats, kinds)


def keep_exemplar_images(state: DissectionState, batch_images: list[LoadedImage]) -> None:
    """Remember the images of this batch (or shard), then forget any no longer in some unit's top k."""
    state.exemplar_images.update({img.index: img for img in batch_images})
    wanted = torch.cat([s.topk.images.flatten() for s in state.layers.values()]).unique().tolist()
    state.exemplar_images = {i: state.exemplar_images[i] for i in wanted if i in state.exemplar_images}


def _infer(forward: LayerForward, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.inference_mode():  # thread-local: entered in the thread that runs the model
        return forward(pixels)


def forward_ahead(forward: LayerForward, batches: Iterable[Batch]) -> Iterator[tuple[Batch, dict[str, torch.Tensor]]]:
    """Each batch with its layers' outputs, the model already running on the next batch (in a
    thread; ONNX Runtime and PyTorch release the GIL) while the caller updates the statistics of
    this one, so the statistics take no wall time while a core is free. Order is unchanged."""
    with ThreadPoolExecutor(1, thread_name_prefix="forward") as pool:
        pending: tuple[Batch, Future | None] | None = None
        for batch in batches:
            running = pool.submit(_infer, forward, batch.pixels) if batch.images else None
            if pending is not None:
                yield pending[0], pending[1].result() if pending[1] is not None else {}
            pending = (batch, running)
        if pending is not None:
            yield pending[0], pending[1].result() if pending[1] is not None else {}


def run_pass(
    loaded: LoadedModel, forward: LayerForward, root: Path, probes: list[ProbeImage], config: DissectConfig,
    state: DissectionState, start: int = 0, checkpoint: Callable[[int], None] | None = None,
    checkpoint_every: float = CHECKPOINT_EVERY, progress: Callable[[int], None] | None = None,
) -> None:
    """Stream the probe images from ``start`` on through the model once, updating the statistics
    batch by batch; ``checkpoint(position)`` is called every ``checkpoint_every`` seconds.

    ``progress(position)`` after each batch replaces the bar on the terminal (a shard's driver
    draws one bar over all shards)."""
    dataset = ProbeDataset(root, probes[start:], loaded.preprocessing.geometry, loaded.preprocessing.to_tensor)
    bar = tqdm(total=len(probes), initial=start, unit="img", desc="dissect", dynamic_ncols=True,
               disable=progress is not None)
    position, saved_at = start, time.monotonic()
    device = next(iter(state.layers.values())).topk.values.device
    with torch.inference_mode():
        for batch, outputs in forward_ahead(forward, iterate_batches(dataset, config.batch_size, config.workers)):
            state.skipped.extend(batch.skipped)
            if batch.images:
                indices = torch.tensor([img.index for img in batch.images], device=device)
                for name, stats in state.layers.items():
                    stats.update(as_spatial(outputs[name], loaded.module).to(device), indices)
                keep_exemplar_images(state, batch.images)
                state.n_read += len(batch.images)
            position += len(batch.images) + len(batch.skipped)
            bar.update(len(batch.images) + len(batch.skipped))
            if progress is not None:
                progress(position)
            if checkpoint is not None and position < len(probes) and time.monotonic() - saved_at >= checkpoint_every:
                checkpoint(position)
                saved_at = time.monotonic()
    bar.close()


def checkpoint_path(out: Path, run_id: str) -> Path:
    """Where an unfinished run keeps its state: beside the catalog, named after both."""
    return out.with_name(f"{out.name}.{run_id}.resume")


def probe_signature(root: Path, probes: list[ProbeImage]) -> str:
    """The probe files as they are now (path, size, modification time): a checkpoint made on
    other files, or on files changed since, must not be resumed."""
    digest = hashlib.sha256()
    for probe in probes:
        try:
            stat = (root / probe.path).stat()
            digest.update(f"{probe.path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{probe.path}\tmissing\n".encode())
    return digest.hexdigest()


def save_checkpoint(path: Path, config: DissectConfig, signature: str, position: int, state: DissectionState,
                    seconds: float) -> None:
    """The whole state as tensors and strings (read back without unpickling code), atomically."""
    images = [state.exemplar_images[i] for i in sorted(state.exemplar_images)]
    write_cached(path, {
        "format": CHECKPOINT_FORMAT, "config": config.as_dict(), "signature": signature,
        "position": position, "seconds": seconds, "n_read": state.n_read, "skipped": list(state.skipped),
        "kinds": dict(state.kinds), "layers": {name: stats.to("cpu").state() for name, stats in state.layers.items()},
        "images": {
            "index": [img.index for img in images], "sha256": [img.sha256 for img in images],
            "width": [img.width for img in images], "height": [img.height for img in images],
            "thumbnail": [torch.frombuffer(bytearray(img.thumbnail), dtype=torch.uint8) for img in images],
        },
    })


def load_checkpoint(path: Path, config: DissectConfig, signature: str) -> tuple[int, DissectionState, float] | None:
    """(position, state, seconds spent) of this very job, or None: no checkpoint, another job's
    (another configuration under the same run id, other files), or an unreadable one."""
    stored = read_cached(path)
    if not isinstance(stored, dict) or stored.get("format") != CHECKPOINT_FORMAT:
        return None
    if stored.get("config") != config.as_dict() or stored.get("signature") != signature:
        return None
    images = stored["images"]
    exemplar_images = {
        index: LoadedImage(index, sha, width, height, thumbnail.numpy().tobytes())
        for index, sha, width, height, thumbnail in zip(
            images["index"], images["sha256"], images["width"], images["height"], images["thumbnail"]
        )
    }
    state = DissectionState(
        layers={name: LayerStatistics.from_state(layer) for name, layer in stored["layers"].items()},
        kinds=dict(stored["kinds"]), exemplar_images=exemplar_images, skipped=list(stored["skipped"]),
        n_read=int(stored["n_read"]),
    )
    return int(stored["position"]), state, float(stored["seconds"])


def unit_table(name: str, stats: LayerStatistics, quantile: float) -> pd.DataFrame:
    """One row per unit of a layer: threshold, quantile, moments and a coarse histogram."""
    hist = stats.histogram
    return pd.DataFrame(
        {
            "layer": name,
            "unit": np.arange(hist.counts.shape[0], dtype=np.int32),
            "threshold": hist.quantile(quantile).numpy(),
            "quantile": np.float32(quantile),
            "act_mean": stats.moments.mean().float().numpy(),
            "act_std": stats.moments.std().float().numpy(),
            "act_min": hist.lo.numpy(),
            "act_max": hist.hi.numpy(),
            "hist": list(hist.coarse(PLOT_BINS).int().numpy()),
        }
    )


def exemplar_table(name: str, stats: LayerStatistics, images: dict[int, LoadedImage]) -> pd.DataFrame:
    """One row per (unit, rank) with the quantised activation map of that exemplar."""
    topk = stats.topk
    units, k = topk.values.shape
    quantised = quantise(topk.maps)
    frame = pd.DataFrame(
        {
            "layer": name,
            "unit": np.repeat(np.arange(units, dtype=np.int32), k),
            "rank": np.tile(np.arange(k, dtype=np.int16), units),
            "image_index": topk.images.flatten().numpy(),
            "activation": topk.values.flatten().numpy(),
            "amap_min": quantised.low.flatten().numpy(),
            "amap_max": quantised.high.flatten().numpy(),
            "amap": [row.tobytes() for row in quantised.codes.reshape(units * k, -1).numpy()],
        }
    )
    frame = frame[frame.image_index >= 0]
    frame["sha256"] = [images[i].sha256 for i in frame.image_index]
    return frame.drop(columns="image_index")


def image_table(root: Path, probes: list[ProbeImage], images: dict[int, LoadedImage]) -> pd.DataFrame:
    """One row per exemplar image, with the file's full path as this run read it."""
    rows = [
        {
            "sha256": img.sha256, "path": str(root / probes[i].path), "width": img.width, "height": img.height,
            "label": probes[i].label, "thumbnail": img.thumbnail,
        }
        for i, img in sorted(images.items())
    ]
    return pd.DataFrame(rows).drop_duplicates("sha256")


def build_tables(
    config: DissectConfig, root: Path, probes: list[ProbeImage], state: DissectionState,
    timings: dict[str, float], runtime: dict[str, str] | None = None,
) -> RunTables:
    """Turn the final state into the catalog's rows; ``runtime`` (backend, device) joins the
    run's recorded configuration: it made the run but does not change its results."""
    layers = pd.DataFrame(
        [
            {
                "layer": name, "layer_index": i, "kind": state.kinds[name], "n_units": s.topk.values.shape[0],
                "map_height": s.map_height, "map_width": s.map_width,
            }
            for i, (name, s) in enumerate(state.layers.items())
        ]
    )
    run = RunRecord(
        run_id=config.resolved_run_id(), model=config.model, layers=list(config.layers),
        probe_root=str(root), config={**config.as_dict(), **(runtime or {})}, code_version=code_version(),
        n_images=state.n_read, n_skipped=len(state.skipped), seconds=sum(timings.values()), timings=timings,
    )
    return RunTables(
        run=run,
        layers=layers,
        units=pd.concat([unit_table(n, s, config.quantile) for n, s in state.layers.items()], ignore_index=True),
        images=image_table(root, probes, state.exemplar_images),
        exemplars=pd.concat(
            [exemplar_table(n, s, state.exemplar_images) for n, s in state.layers.items()], ignore_index=True
        ),
    )


def prepare(config: DissectConfig, out: Path) -> tuple[DissectConfig, Path, list[ProbeImage]]:
    """Checks before any work (parameters, the catalog's folder) and the probe list: the job's
    configuration (k at most the number of images), the probe root and its images."""
    validate(config)
    check_writable(out)
    root = (Path(config.images) if config.images else default_probe_root()).resolve()
    probes = first_images(root, config.max_images)
    if config.k > len(probes):  # more exemplars than images would only allocate empty slots
        print(f"note: --k {config.k} is more than the {len(probes)} images; keeping {len(probes)} per unit",
              file=sys.stderr)
        config = replace(config, k=len(probes))
    return config, root, probes


def load_dissected(config: DissectConfig, on: torch.device) -> LoadedModel:
    """The run's model (and its weights file, if any) on the device the pass runs on."""
    loaded = load_model(config.model, Path(config.weights) if config.weights else None)
    loaded.module.to(on)
    return loaded


def write_state(config: DissectConfig, out: Path, root: Path, probes: list[ProbeImage], state: DissectionState,
                timings: dict[str, float], runtime: dict[str, str], lock_wait: float,
                keep: Callable[[], Path], resumed_from: int = 0) -> Summary:
    """Write the finished state as one run of the catalog, in one transaction. If the catalog
    stays locked, ``keep()`` saves the state and names where, so the same command only writes it."""
    if state.n_read == 0:
        shown = "; ".join(state.skipped[:3]) + ("; ..." if len(state.skipped) > 3 else "")
        raise UserError(f"none of the {len(probes)} files under {root} could be read as an image: {shown}")
    written_at = time.perf_counter()
    state.layers = {name: stats.to("cpu") for name, stats in state.layers.items()}
    tables = build_tables(config, root, probes, state, timings, runtime)
    try:
        with Catalog(out, writable=True, wait=lock_wait) as catalog:
            written = catalog.write_run(tables)
    except UserError as error:
        raise UserError(f"{error}; the finished pass is kept in {keep()}, so that command only writes it") from error
    timings["write"] = time.perf_counter() - written_at
    return Summary(
        run_id=tables.run.run_id, n_images=state.n_read, skipped=state.skipped,
        n_units=len(tables.units), catalog_bytes=out.stat().st_size, seconds=sum(timings.values()),
        resumed_from=resumed_from, written=written,
    )


def dissect(config: DissectConfig, out: Path, checkpoint_every: float = CHECKPOINT_EVERY,
            lock_wait: float = LOCK_WAIT, backend: str = "auto", device: str = "auto") -> Summary:
    """Run the whole job and write (or replace) one run in the catalog at ``out``.

    Resumes from the checkpoint of an interrupted run of the same job, if there is one. Whatever
    would stop the final write (an unwritable folder, a foreign file, a lock) fails before the
    pass; a lock met at the end anyway is waited out for ``lock_wait`` seconds, and if it stays,
    the finished state is kept as a checkpoint so the same command writes it without a new pass.
    The ``backend`` and ``device`` (see ``milan_core.runtime``) change the speed, not the catalog
    (beyond float rounding); the run records both.
    """
    started = time.perf_counter()
    config, root, probes = prepare(config, out)
    on = resolve_device(device)
    loaded = load_dissected(config, on)
    run_id, signature = config.resolved_run_id(), probe_signature(root, probes)
    resume = checkpoint_path(out, run_id)
    with layer_forward(loaded, config.layers, backend, on, config.workers, config.precision) as forward:
        resumed = load_checkpoint(resume, config, signature)
        if resumed is None:
            position, state, earlier = 0, empty_state(loaded, config, forward, statistics_device(on)), 0.0
        else:
            position, state, earlier = resumed
            state.layers = {name: stats.to(statistics_device(on)) for name, stats in state.layers.items()}
            print(f"resuming run {run_id} after image {position} of {len(probes)} (from {resume})", file=sys.stderr)
        loaded_at = time.perf_counter()

        def save(at: int) -> None:
            save_checkpoint(resume, config, signature, at, state, earlier + time.perf_counter() - loaded_at)

        run_pass(loaded, forward, root, probes, config, state, position, save, checkpoint_every)
    timings = {"load": loaded_at - started, "pass": earlier + time.perf_counter() - loaded_at}

    def keep() -> Path:
        save_checkpoint(resume, config, signature, len(probes), state, timings["pass"])
        return resume

    summary = write_state(config, out, root, probes, state, timings, {"backend": forward.backend, "device": str(on)},
                          lock_wait, keep, position)
    resume.unlink(missing_ok=True)
    return summary
