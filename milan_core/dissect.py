"""The dissection job: images -> model with hooks -> streaming statistics -> exemplars -> catalog.

One pass over the probe set. The per-unit state (top-k with their maps, histogram, moments) is
all that is kept, so memory does not grow with the number of images; the catalog is written in
one transaction at the end, so an interrupted job leaves the file as it was, and a rerun simply
starts again (same inputs and seed give the same catalog).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import milan_core
from milan_core.catalog import Catalog, RunRecord, RunTables
from milan_core.config import DissectConfig
from milan_core.errors import UserError
from milan_core.exemplars import quantise
from milan_core.hooks import LayerRecorder, layer_kind
from milan_core.images import (
    LoadedImage,
    ProbeDataset,
    ProbeImage,
    default_probe_root,
    find_images,
    iterate_batches,
)
from milan_core.models import LoadedModel, load_model
from milan_core.statistics import LayerStatistics

PLOT_BINS = 32


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


def empty_state(loaded: LoadedModel, config: DissectConfig) -> DissectionState:
    """Size the per-layer statistics from one forward pass of a blank image."""
    size = loaded.preprocessing.input_size
    with LayerRecorder(loaded.module, config.layers) as recorder, torch.inference_mode():
        loaded.module(torch.zeros(1, 3, size, size))
    stats, kinds = {}, {}
    for name in config.layers:
        if name not in recorder.outputs:
            raise UserError(f"layer {name} produced no tensor output; pick another with the layers command")
        maps = recorder.spatial(name)
        stats[name] = LayerStatistics.empty(maps.shape[1], config.k, maps.shape[2], maps.shape[3])
        kinds[name] = layer_kind(recorder.outputs[name])
    return DissectionState(stats, kinds)


def _keep_exemplar_images(state: DissectionState, batch_images: list[LoadedImage]) -> None:
    """Remember the images of this batch, then forget any no longer in some unit's top k."""
    state.exemplar_images.update({img.index: img for img in batch_images})
    wanted = torch.cat([s.topk.images.flatten() for s in state.layers.values()]).unique().tolist()
    state.exemplar_images = {i: state.exemplar_images[i] for i in wanted if i in state.exemplar_images}


def run_pass(
    loaded: LoadedModel, root: Path, probes: list[ProbeImage], config: DissectConfig, state: DissectionState
) -> None:
    """Stream every probe image through the model once, updating the statistics batch by batch."""
    dataset = ProbeDataset(root, probes, loaded.preprocessing.geometry, loaded.preprocessing.to_tensor)
    bar = tqdm(total=len(probes), unit="img", desc="dissect", dynamic_ncols=True)
    with LayerRecorder(loaded.module, config.layers) as recorder, torch.inference_mode():
        for batch in iterate_batches(dataset, config.batch_size, config.workers):
            state.skipped.extend(batch.skipped)
            if batch.images:
                loaded.module(batch.pixels)
                indices = torch.tensor([img.index for img in batch.images])
                for name, stats in state.layers.items():
                    stats.update(recorder.spatial(name), indices)
                _keep_exemplar_images(state, batch.images)
                state.n_read += len(batch.images)
            bar.update(len(batch.images) + len(batch.skipped))
    bar.close()


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
            "hist_lo": hist.lo.numpy(),
            "hist_hi": hist.hi.numpy(),
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


def image_table(probes: list[ProbeImage], images: dict[int, LoadedImage]) -> pd.DataFrame:
    rows = [
        {
            "sha256": img.sha256, "path": probes[i].path, "width": img.width, "height": img.height,
            "label": probes[i].label, "thumbnail": img.thumbnail,
        }
        for i, img in sorted(images.items())
    ]
    return pd.DataFrame(rows).drop_duplicates("sha256")


def build_tables(
    config: DissectConfig, root: Path, probes: list[ProbeImage], state: DissectionState,
    timings: dict[str, float],
) -> RunTables:
    """Turn the final state into the catalog's rows."""
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
        probe_root=str(root), config=config.as_dict(), code_version=code_version(),
        n_images=state.n_read, n_skipped=len(state.skipped), seconds=sum(timings.values()), timings=timings,
    )
    return RunTables(
        run=run,
        layers=layers,
        units=pd.concat([unit_table(n, s, config.quantile) for n, s in state.layers.items()], ignore_index=True),
        images=image_table(probes, state.exemplar_images),
        exemplars=pd.concat(
            [exemplar_table(n, s, state.exemplar_images) for n, s in state.layers.items()], ignore_index=True
        ),
    )


def dissect(config: DissectConfig, out: Path) -> Summary:
    """Run the whole job and write (or replace) one run in the catalog at ``out``."""
    validate(config)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    root = Path(config.images) if config.images else default_probe_root()
    probes = find_images(root)[: config.max_images]
    loaded = load_model(config.model, Path(config.weights) if config.weights else None)
    state = empty_state(loaded, config)
    loaded_at = time.perf_counter()
    run_pass(loaded, root, probes, config, state)
    passed_at = time.perf_counter()
    if state.n_read == 0:
        raise UserError(f"none of the {len(probes)} files under {root} could be read as an image")
    timings = {"load": loaded_at - started, "pass": passed_at - loaded_at}
    tables = build_tables(config, root, probes, state, timings)
    with Catalog(out, writable=True) as catalog:
        catalog.write_run(tables)
    timings["write"] = time.perf_counter() - passed_at
    return Summary(
        run_id=tables.run.run_id, n_images=state.n_read, skipped=state.skipped,
        n_units=len(tables.units), catalog_bytes=out.stat().st_size, seconds=sum(timings.values()),
    )
