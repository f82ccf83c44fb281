"""The live probe: run a run's model on one new photo and find the units that fire most on it.

What OpenAI Microscope and Neuronpedia do for a typed input, here for a photo: the run's model is
loaded again (only a model the project knows by name: a catalog's ``module:callable`` is never
imported, see issue 10), the photo goes through the model's own preprocessing with the run's layers
hooked, and each unit's peak activation on it is set against what the unit does on the probe set:
``peak / act_max`` (1.0 = as strongly as on its best probe image), kept only above the unit's own
threshold. Its map is drawn on the photo like an exemplar's. The model runs on the device the app
was started with (``app_device``: ``-- --device cuda`` after ``streamlit run catalog_app/app.py``, or
``MILAN_DEVICE``; the CPU by default), resolved like every command's ``--device``. No Streamlit here.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from milan_core.errors import UserError
from milan_core.hooks import LayerRecorder
from milan_core.images import encode_thumbnail
from milan_core.models import LoadedModel, load_recorded_model
from milan_core.runtime import resolve_device

#: Largest upload read (bytes) and decoded (pixels): a photo, not a poster or a decompression bomb.
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
PROBE_THUMBNAIL = 224
DEVICE_ENV = "MILAN_DEVICE"
#: The app's default device: one photo at a time on a shared server, where the CPU is always there.
DEFAULT_DEVICE = "cpu"


@dataclass(frozen=True)
class ProbeResult:
    """The photo as the model saw it (a JPEG thumbnail) and every unit's peak and map on it."""

    thumbnail: bytes
    units: pd.DataFrame  # the run's units + peak, strength, amap (H, W float32)


def read_upload(data: bytes) -> Image.Image:
    """An uploaded file as an RGB picture, or a UserError in one sentence (not an image, too big)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UserError(
            f"that file is {len(data) / 2**20:.0f} MB; the probe takes photos up to {MAX_UPLOAD_BYTES // 2**20} MB"
        )
    try:
        picture = Image.open(io.BytesIO(data))
        if picture.width * picture.height > MAX_UPLOAD_PIXELS:
            raise UserError(
                f"that image is {picture.width}x{picture.height} pixels; the probe takes up to "
                f"{MAX_UPLOAD_PIXELS // 1_000_000} million"
            )
        picture.load()
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise UserError("that file is not an image Pillow can read (JPEG, PNG, WebP, BMP ...)") from error
    if picture.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or float greyscale: scale, don't clip
        values = np.asarray(picture, dtype=np.float32)
        span = max(float(values.max() - values.min()), 1e-6)
        picture = Image.fromarray(((values - values.min()) / span * 255).astype(np.uint8))
    return picture.convert("RGB")


def device_spec(argv: list[str] | None = None) -> str:
    """The device the app was started with: ``--device`` after ``--`` on the ``streamlit run`` line
    (Streamlit hands the script those arguments), else ``MILAN_DEVICE``, else the CPU."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--device", default=None)
    asked = parser.parse_known_args(sys.argv[1:] if argv is None else argv)[0].device
    return asked or os.environ.get(DEVICE_ENV) or DEFAULT_DEVICE


def app_device(spec: str | None = None) -> torch.device:
    """The live probe's device (``device_spec``), or a UserError in one sentence when it is not here."""
    spec = spec or device_spec()
    try:
        return resolve_device(spec)
    except UserError as error:
        raise UserError(f"the live probe cannot run on the device the app was started with ({spec}): {error}") from None


def probe_model(model_name: str, weights: str | None, device: torch.device | None = None) -> LoadedModel:
    """The run's model on ``device`` (the CPU by default), if it is one the project loads by name;
    a catalog never makes us import code."""
    if ":" in model_name:
        raise UserError(
            f"the live probe only loads models known by name; {model_name!r} names code to import, "
            "which a catalog is never allowed to make the app do"
        )
    loaded = load_recorded_model(model_name, weights)
    loaded.module.to(device or torch.device(DEFAULT_DEVICE))
    return loaded


@torch.inference_mode()
def probe(model: LoadedModel, picture: Image.Image, units: pd.DataFrame) -> ProbeResult:
    """Every unit of ``units`` (a run's units: layer, unit, threshold, act_max) with its peak
    activation on ``picture``, its strength (peak / act_max) and its (H, W) map, on the model's device."""
    view = model.preprocessing.geometry(picture.convert("RGB"))
    device = next(model.module.parameters()).device
    batch = model.preprocessing.to_tensor(view).unsqueeze(0).to(device)
    layers = list(dict.fromkeys(units.layer))
    with LayerRecorder(model.module, layers) as recorder:
        model.module(batch)
        maps = {layer: recorder.spatial(layer)[0].float().cpu() for layer in layers}  # (C, H, W) each
    frames = []
    for layer, rows in units.groupby("layer", sort=False):
        channels = maps[layer][torch.tensor(rows.unit.tolist())]
        peaks = channels.flatten(1).amax(1).numpy()
        frames.append(rows.assign(peak=peaks, amap=list(channels.numpy())))
    found = pd.concat(frames, ignore_index=True)
    found["strength"] = found.peak / found.act_max.where(found.act_max > 0, np.nan)
    return ProbeResult(encode_thumbnail(view, PROBE_THUMBNAIL), found)


def strongest(result: ProbeResult, per_layer: int) -> pd.DataFrame:
    """Per layer, the ``per_layer`` units above their threshold that fire most (by strength)."""
    above = result.units[result.units.peak > result.units.threshold]
    ranked = above.sort_values(["strength", "peak"], ascending=False)
    return ranked.groupby("layer", sort=False).head(per_layer)
