"""catalog_app.probe: the live probe runs the run's real model on a real photo; bad uploads get a sentence."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalog_app.probe import (
    DEVICE_ENV,
    MAX_UPLOAD_PIXELS,
    app_device,
    device_spec,
    probe,
    probe_model,
    read_upload,
    strongest,
)
from milan_core.catalog import Catalog
from milan_core.errors import UserError


def png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_uploads_get_one_sentence() -> None:
    with pytest.raises(UserError, match="not an image"):
        read_upload(b"%PDF-1.4 this is no photo")
    with pytest.raises(UserError, match="not an image"):
        read_upload(b"")
    side = int(MAX_UPLOAD_PIXELS**0.5) + 10
    with pytest.raises(UserError, match=f"{side}x{side} pixels"):
        read_upload(png(Image.new("1", (side, side))))


def test_odd_modes_are_read_as_rgb_and_16_bit_is_scaled_not_clipped() -> None:
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    picture = read_upload(png(Image.fromarray(ramp)))
    assert picture.mode == "RGB" and 100 < np.asarray(picture).mean() < 155  # mid-grey on average, not white
    assert read_upload(png(Image.new("RGBA", (8, 8), (255, 0, 0, 10)))).mode == "RGB"
    assert read_upload(png(Image.new("P", (8, 8)))).mode == "RGB"


def test_a_catalog_model_naming_code_is_never_imported() -> None:
    with pytest.raises(UserError, match="never allowed"):
        probe_model("faulthandler:dump_traceback", None)


def test_the_probe_finds_the_units_that_hold_a_probe_photo_among_their_exemplars(described_catalog: Path) -> None:
    with Catalog(described_catalog) as catalog:
        run = catalog.run()
        unit_id = catalog.unit_id(run.run_id, "blocks.6:17")
        best = catalog.exemplars(unit_id, decode=False).iloc[0]
        photo = Path(run.probe_root) / best.path
        units = catalog.units(run.run_id)
    result = probe(probe_model(run.model, run.config.get("weights")), read_upload(photo.read_bytes()), units)
    row = result.units.set_index("key").loc["blocks.6:17"]
    assert row.peak == pytest.approx(best.activation, rel=1e-3)  # the same model, the same view: the same peak
    assert row["amap"].shape == (7, 7)
    shown = strongest(result, 4)
    assert set(shown.layer) <= {"blocks.2", "blocks.6", "classifier"} and shown.groupby("layer").size().max() <= 4
    assert (shown.peak > shown.threshold).all()


def test_the_probe_runs_on_the_device_the_app_was_started_with(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert device_spec([]) == "cpu" and app_device("cpu").type == "cpu"  # the default
    monkeypatch.setenv(DEVICE_ENV, "cuda:1")
    assert device_spec([]) == "cuda:1"
    assert device_spec(["--theme", "x", "--device", "mps"]) == "mps"  # `streamlit run app.py -- --device mps`
    with pytest.raises(UserError, match=r"cannot run on the device the app was started with \(cuda:99\)"):
        app_device("cuda:99")  # no machine here has a 100th GPU
    with pytest.raises(UserError, match="must be auto, cpu"):
        app_device("tpu")
