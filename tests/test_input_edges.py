"""Input at the edges: wide pixels, oversized images, folders with nothing readable, impossible
parameters, damaged catalogs -- each read properly or refused in one line, never a traceback."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from milan_core.catalog import Catalog
from milan_core.cli import main
from milan_core.describe.store import load_run_view
from milan_core.errors import UserError
from milan_core.images import ProbeDataset, as_rgb, find_images, first_images


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(("error", "Traceback"))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_16_bit_grey_png_is_scaled_not_clipped(lite0, tmp_path: Path) -> None:
    Image.fromarray(np.full((300, 300), 32768, dtype=np.uint16)).save(tmp_path / "grey16.png")
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")  # Pillow reads it as 16-bit grey
    dataset = ProbeDataset(tmp_path, find_images(tmp_path), lite0.preprocessing.geometry, lite0.preprocessing.to_tensor)
    by_name = {dataset.images[i].path: dataset[i] for i in range(len(dataset))}
    thumbnail = np.asarray(Image.open(io.BytesIO(by_name["grey16.png"][2].thumbnail)))
    assert abs(thumbnail.mean() - 128) < 2  # was 254-255: clipped to white
    rgb = np.asarray(as_rgb(Image.open(tmp_path / "ramp16.png")))[0, :, 0]
    assert rgb[0] == 0 and rgb[-1] == 255 and (np.diff(rgb.astype(int)) >= 0).all()


def test_k_larger_than_the_probe_set_is_capped_with_a_note(probe_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "c.duckdb"
    assert main(["dissect", "--images", str(probe_dir), "--max-images", "4", "--k", "100000", "--layers", "blocks.6",
                 "--workers", "0", "--out", str(out)]) == 0
    assert "note: --k 100000 is more than the 4 images; keeping 4 per unit" in capsys.readouterr().err
    with Catalog(out) as catalog:
        run = catalog.run()
        assert run.config["k"] == 4
        assert len(catalog.exemplars(catalog.unit_id(run.run_id, "blocks.6:0"))) == 4


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_images_below_one_is_refused(value: str, probe_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "c.duckdb"
    assert main(["dissect", "--images", str(probe_dir), "--max-images", value, "--out", str(out)]) == 2
    assert f"--max-images must be at least 1 (got {value})" in error_line(capsys)
    assert not (tmp_path / "c.duckdb").exists()
    with pytest.raises(UserError, match="at least 1"):
        first_images(probe_dir, int(value))
    assert len(first_images(probe_dir, 3)) == 3 and len(first_images(probe_dir, None)) == 36


def test_an_image_over_the_pixel_limit_says_so_and_the_flag_lets_it_in(
    probe_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # the flag sets it; undo after
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(probe_dir.iterdir())[:2]:
        shutil.copy(path, folder / path.name)
    Image.new("RGB", (400, 300), "grey").save(folder / "big.png")  # 120,000 pixels
    out = tmp_path / "c.duckdb"
    base = ["dissect", "--images", str(folder), "--layers", "blocks.6", "--k", "2", "--workers", "0", "--out", str(out)]
    assert main([*base, "--max-image-pixels", "40000"]) == 0  # the photos are 224 x 168 or less: under 2 x 40,000
    err = capsys.readouterr().err
    assert "big.png (over Pillow's limit of 40000 pixels; raise it with --max-image-pixels N" in err
    assert main([*base, "--max-image-pixels", "200000"]) == 0
    assert "skipped 0" in capsys.readouterr().out


def test_a_folder_with_nothing_readable_names_its_files_and_why(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "notes.jpg").write_text("not a photo")
    (folder / "half.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    out = tmp_path / "c.duckdb"
    assert main(["dissect", "--images", str(folder), "--workers", "0", "--out", str(out)]) == 2
    line = error_line(capsys)
    assert "none of the 2 files" in line and "half.png (" in line
    assert "notes.jpg (not an image Pillow can identify)" in line
    assert not out.exists()


def test_weights_that_are_no_checkpoint_are_one_line(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "weights.bin"
    junk.write_bytes(b"\x80\x04\x95" + b"garbage" * 50)
    assert main(["layers", "--model", "resnet18", "--weights", str(junk)]) == 2
    line = error_line(capsys)
    assert "is not a PyTorch checkpoint" in line and "weights_only" not in line


def test_evaluate_says_up_front_that_it_will_write_into_the_catalog(
    small_catalog: Path, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "mine.duckdb"
    shutil.copy(small_catalog, path)
    assert main(["evaluate", "final-layer", "--catalog", str(path), "--describer", "nope"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("note: run ") and f"writes them into {path}" in err[0]
    assert err[-1].startswith("error: unknown describer")


def test_a_partly_overwritten_catalog_is_one_line(small_catalog: Path, tmp_path: Path, capsys) -> None:
    """Garbage over each block in turn: a block the queries read must fail in one line, not a traceback."""
    size = small_catalog.stat().st_size
    damaged = tmp_path / "damaged.duckdb"
    for offset in range(16384, size, 16384):
        shutil.copy(small_catalog, damaged)
        with damaged.open("r+b") as handle:
            handle.seek(offset)
            handle.write(b"\xde\xad\xbe\xef" * 1024)
        try:
            with Catalog(damaged) as catalog:
                load_run_view(catalog, None)
        except UserError:
            continue  # damaged where the catalog is opened: already one line
        except duckdb.IOException:
            break  # damaged in a block only a query reads
    else:
        pytest.fail("no block of the catalog was read by a query")
    assert main(["describe", "--catalog", str(damaged)]) == 2
    assert "the catalog file is damaged" in error_line(capsys)
