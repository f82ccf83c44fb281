"""The dissection job end to end on real photos, a real model and a real DuckDB file."""

from __future__ import annotations

import io
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from milan_core import dissect as dissect_module
from milan_core.catalog import Catalog
from milan_core.config import DissectConfig
from milan_core.dissect import checkpoint_path, dissect
from milan_core.hooks import LayerRecorder
from milan_core.images import find_images


def test_catalog_holds_every_unit_of_every_layer(small_catalog: Path) -> None:
    with Catalog(small_catalog) as catalog:
        run = catalog.run()
        assert run.model == "efficientnet-lite0" and run.n_images == 36 and run.n_skipped == 0
        layers = catalog.layers(run.run_id)
        assert layers[["layer", "kind", "n_units", "map_height", "map_width"]].values.tolist() == [
            ["blocks.2", "conv", 40, 28, 28],
            ["blocks.6", "conv", 320, 7, 7],
            ["classifier", "flat", 1000, 1, 1],
        ]
        units = catalog.units(run.run_id)
        assert len(units) == 1360
        assert (units.threshold <= units.act_max).all() and (units.threshold >= units.act_min).all()
        # Every spatial position of every image is counted once in each unit's histogram.
        positions = units.layer.map({"blocks.2": 36 * 28 * 28, "blocks.6": 36 * 7 * 7, "classifier": 36})
        assert units["hist"].map(sum).eq(positions).all()
        assert units.key.iloc[0] == "blocks.2:0"


def test_exemplars_are_ranked_and_their_maps_decode(small_catalog: Path) -> None:
    with Catalog(small_catalog) as catalog:
        unit_id = catalog.unit_id(catalog.run().run_id, "blocks.6:17")
        exemplars = catalog.exemplars(unit_id)
        assert exemplars["rank"].tolist() == [0, 1, 2, 3, 4]
        assert exemplars.activation.is_monotonic_decreasing
        for row in exemplars.itertuples():
            assert row.map.shape == (7, 7)
            # The top-k score is the map's spatial max; quantisation keeps max exactly.
            assert row.map.max() == pytest.approx(row.activation, rel=1e-5)
        image = catalog.image(int(exemplars.image_id.iloc[0]))
        thumbnail = Image.open(io.BytesIO(image.thumbnail))
        assert thumbnail.size == (112, 112)
        assert image.label is not None and image.label.startswith("n")


def test_thresholds_and_top_images_match_a_direct_computation(small_catalog: Path, lite0, probe_dir: Path) -> None:
    """Recompute blocks.6 from scratch (all activations in memory) and compare with the catalog."""
    probes = find_images(probe_dir)
    pixels = torch.stack([lite0.preprocessing(Image.open(probe_dir / p.path)) for p in probes])
    with LayerRecorder(lite0.module, ["blocks.6"]) as recorder, torch.inference_mode():
        lite0.module(pixels)
    maps = recorder.spatial("blocks.6")  # (24, 320, 7, 7)
    ordered = maps.transpose(0, 1).reshape(320, -1).double().sort(dim=1).values
    rank = 0.99 * ordered.shape[1]  # the 0.99-quantile lies between these order statistics
    below, above = ordered[:, int(np.floor(rank)) - 1], ordered[:, int(np.ceil(rank))]
    top = maps.flatten(2).amax(2).argmax(0)  # best image per unit
    with Catalog(small_catalog) as catalog:
        run_id = catalog.run().run_id
        units = catalog.units(run_id, layer="blocks.6")
        bin_width = 2 * (units.act_max - units.act_min).to_numpy() / 2048 + 1e-6
        threshold = units.threshold.to_numpy()
        assert np.all(threshold >= below.numpy() - bin_width)
        assert np.all(threshold <= above.numpy() + bin_width)
        firsts = catalog.query(
            "SELECT u.unit, p.path FROM exemplars e JOIN units u USING (unit_id) "
            "JOIN run_images p ON p.run_id = u.run_id AND p.image_id = e.image_id "
            "WHERE u.run_id = ? AND u.layer = 'blocks.6' AND e.rank = 0 ORDER BY u.unit", [run_id]
        )
    assert firsts.path.tolist() == [str(probe_dir.resolve() / probes[i].path) for i in top.tolist()]


def test_same_inputs_give_identical_catalog_contents(
    small_catalog: Path, small_config: DissectConfig, tmp_path: Path
) -> None:
    again = tmp_path / "again.duckdb"
    dissect(replace(small_config, layers=("blocks.6",)), again)
    with Catalog(small_catalog) as first, Catalog(again) as second:
        query = ("SELECT u.unit, u.threshold, e.rank, e.activation, e.amap, i.sha256 FROM units u "
                 "JOIN exemplars e USING (unit_id) JOIN images i USING (image_id) "
                 "WHERE u.layer = 'blocks.6' ORDER BY u.unit, e.rank")
        assert first.query(query).equals(second.query(query))


BLOCKS_6 = ("SELECT u.unit, u.threshold, u.act_mean, u.hist, e.rank, e.activation, e.amap, i.sha256, i.thumbnail "
            "FROM units u JOIN exemplars e USING (unit_id) JOIN images i USING (image_id) "
            "WHERE u.layer = 'blocks.6' ORDER BY u.unit, e.rank")


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, batches: int) -> None:
    """Stop the pass as Ctrl-C would, in the middle of batch ``batches + 1`` (its statistics updated)."""
    real = dissect_module.keep_exemplar_images
    seen = []

    def keep(state, images) -> None:
        seen.append(len(images))
        if len(seen) > batches:
            raise KeyboardInterrupt
        real(state, images)

    monkeypatch.setattr(dissect_module, "keep_exemplar_images", keep)


def test_an_interrupted_run_resumes_where_it_stopped_and_gives_the_same_catalog(
    small_catalog: Path, small_config: DissectConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "resumed.duckdb"
    config = replace(small_config, layers=("blocks.6",))  # 36 photos in batches of 8
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            dissect(config, out, checkpoint_every=0)
    resume = checkpoint_path(out, config.resolved_run_id())
    assert resume.is_file() and not out.exists()
    summary = dissect(config, out)
    assert summary.resumed_from == 16 and summary.n_images == 36 and not resume.exists()
    assert f"resuming run {config.resolved_run_id()} after image 16 of 36" in capsys.readouterr().err
    with Catalog(small_catalog) as uninterrupted, Catalog(out) as resumed:
        assert uninterrupted.query(BLOCKS_6).equals(resumed.query(BLOCKS_6))
        assert resumed.run(None).n_images == 36


def test_a_checkpoint_of_another_job_or_of_changed_files_is_not_resumed(
    small_config: DissectConfig, probe_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = tmp_path / "photos"
    shutil.copytree(probe_dir, images)
    out = tmp_path / "other.duckdb"
    config = replace(small_config, images=str(images), layers=("blocks.6",), run_id="same-name")
    resume = checkpoint_path(out, "same-name")
    for change in ("another k", "a changed photo", "a damaged checkpoint"):
        with monkeypatch.context() as patch:
            _interrupt_after(patch, 1)
            with pytest.raises(KeyboardInterrupt):
                dissect(config, out, checkpoint_every=0)
        assert resume.is_file()
        rerun = config
        if change == "another k":
            rerun = replace(config, k=3)
        elif change == "a changed photo":
            first = sorted(images.iterdir())[0]
            first.write_bytes(first.read_bytes() + b"\0")
        else:
            resume.write_bytes(resume.read_bytes()[:100])
        summary = dissect(rerun, out)
        assert summary.resumed_from == 0 and summary.n_images == 36 and not resume.exists(), change
    with Catalog(out) as catalog:
        assert catalog.query("SELECT max(rank) AS r FROM exemplars").r[0] == 4


def test_rerun_replaces_the_run_and_other_runs_stay(small_config: DissectConfig, tmp_path: Path) -> None:
    out = tmp_path / "two.duckdb"
    config = replace(small_config, layers=("blocks.6",), max_images=6)
    dissect(config, out)
    dissect(replace(config, run_id="second", k=3), out)
    dissect(config, out)  # the same parameters again: replaced, not duplicated
    with Catalog(out) as catalog:
        assert sorted(catalog.runs().run_id) == sorted([config.resolved_run_id(), "second"])
        counts = catalog.query("SELECT run_id, count(*) AS n FROM units GROUP BY run_id ORDER BY run_id")
        assert counts.n.tolist() == [320, 320]
        per_unit = catalog.query("SELECT count(*) AS n FROM exemplars e JOIN units u USING (unit_id) "
                                 "WHERE u.run_id = 'second' GROUP BY unit_id")
        assert set(per_unit.n) == {3}
        # Images shared by both runs are stored once.
        assert catalog.query("SELECT count(*) = count(DISTINCT sha256) AS once FROM images").once[0]


def test_fewer_images_than_k_keeps_only_real_exemplars(small_config: DissectConfig, tmp_path: Path) -> None:
    out = tmp_path / "few.duckdb"
    dissect(replace(small_config, layers=("blocks.6",), max_images=3), out)
    with Catalog(out) as catalog:
        assert catalog.query("SELECT max(rank) AS r FROM exemplars").r[0] == 2


def test_other_architectures_resnet_and_vit(probe_dir: Path, tmp_path: Path) -> None:
    """Random torchvision ResNet (conv maps) and timm ViT (tokens laid back on their grid)."""
    out = tmp_path / "arch.duckdb"
    base = DissectConfig(images=str(probe_dir), k=3, batch_size=4, workers=0, max_images=6)
    with pytest.warns(UserWarning, match="random weights"):
        dissect(replace(base, model="resnet18", layers=("layer3", "fc"), run_id="resnet"), out)
    with pytest.warns(UserWarning, match="random weights"):
        dissect(replace(base, model="vit_tiny_patch16_224", layers=("blocks.2",), run_id="vit"), out)
    with Catalog(out) as catalog:
        resnet = catalog.layers("resnet")
        assert resnet[["layer", "kind", "n_units", "map_height"]].values.tolist() == [
            ["layer3", "conv", 256, 14], ["fc", "flat", 1000, 1]
        ]
        vit = catalog.layers("vit")
        assert vit[["kind", "n_units", "map_height", "map_width"]].values.tolist() == [["tokens", 192, 14, 14]]
        unit_id = catalog.unit_id("vit", "blocks.2:5")
        assert catalog.exemplars(unit_id)["map"].iloc[0].shape == (14, 14)
