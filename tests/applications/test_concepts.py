"""Descriptions read through WordNet: groups, specificity, concepts and ImageNet labels."""

from __future__ import annotations

import pytest

from milan_core.applications import concepts
from milan_core.errors import UserError


@pytest.mark.parametrize(
    ("description", "groups"),
    [
        ("a dog's face", {"animal"}),
        ("wheels of a car", {"artefact"}),
        ("red and white stripes", {"colour", "texture"}),
        ("green grass", {"colour", "plant"}),
        ("blue sky", {"colour"}),
    ],
)
def test_groups_come_from_hypernyms_colour_senses_and_texture_words(description: str, groups: set[str]) -> None:
    assert concepts.description_groups(description) == groups


def test_specificity_is_the_deepest_word() -> None:
    assert concepts.specificity("golden retriever") > concepts.specificity("dog") > concepts.specificity("animal")
    assert concepts.specificity("the left side") == 0


def test_a_concept_covers_its_hyponyms_in_descriptions_and_labels() -> None:
    dog = concepts.concept_synset("dog")
    assert concepts.mentions("a photo of Tibetan Mastiff", dog)
    assert not concepts.mentions("a photo of tabby cat", dog)
    assert concepts.label_is("n02099601", dog)  # golden retriever
    assert not concepts.label_is("n01440764", dog)  # tench
    with pytest.raises(UserError, match="no noun"):
        concepts.concept_synset("qwxzv")
