"""The PMI selection rule shared by every describer."""

from __future__ import annotations

import math

import pytest

from milan_core.describe.base import (
    Candidate,
    agree,
    evidence_prior,
    layer_priors,
    layer_shares,
    pmi_score,
    prefer_specific,
    select,
    spread_layer_shares,
)
from milan_core.embedding import cached_embed


def _c(text: str, p: float, significance: float | None = None) -> Candidate:
    return Candidate(text, math.log(p), "object", {}, significance)


def test_specific_description_beats_generic_one_true_of_every_unit() -> None:
    # "dog" fits every unit better than anything else; "spotted dog faces" fits unit 0 less well,
    # but nowhere else: the prior must make it win for unit 0 and only there.
    proposals = [[_c("dog", 0.9), _c("spotted dog faces", 0.5)]]
    proposals += [[_c("dog", 0.9), _c(f"other {i}", 0.01)] for i in range(99)]
    prior = evidence_prior(proposals)
    described = select(list(range(100)), proposals, prior)
    assert described[0].chosen.candidate.text == "spotted dog faces"
    assert all(d.chosen.candidate.text == "dog" for d in described[1:])
    assert prior["dog"] > prior["spotted dog faces"]


def test_lambda_zero_is_maximum_likelihood() -> None:
    proposals = [[_c("dog", 0.9), _c("spotted dog faces", 0.5)], [_c("dog", 0.9)]]
    described = select([1, 2], proposals, evidence_prior(proposals), lam=0.0)
    assert described[0].chosen.candidate.text == "dog"


def test_scores_prior_and_confidence_are_kept() -> None:
    proposals = [[_c("a", 0.5), _c("a", 0.25), _c("b", 0.4)]]
    prior = {"a": math.log(0.5), "b": math.log(0.001)}
    (described,) = select([7], proposals, prior)
    assert [s.candidate.text for s in described.ranked] == ["b", "a"]  # "a" kept once, its likelier copy
    assert described.chosen.score == pytest.approx(pmi_score(math.log(0.4), math.log(0.001)))
    assert described.ranked[1].score == pytest.approx(math.log(0.5) - 0.2 * math.log(0.5))
    assert described.confidence == pytest.approx(0.4)


def test_the_describers_kind_prior_says_how_readily_people_name_each_kind() -> None:
    """Without it PMI alone picks the colour pair; a kind prior that people name parts more readily
    than a region's colours turns the choice, and the scores say by how much."""
    proposals = [[Candidate("black and grey", math.log(0.5), "colour"), Candidate("dog faces", math.log(0.4), "part")]]
    prior = {"black and grey": math.log(0.1), "dog faces": math.log(0.1)}
    assert select([1], proposals, prior)[0].chosen.candidate.text == "black and grey"
    (described,) = select([1], proposals, prior, kind_prior={"part": 0.5, "colour": -0.25})
    assert described.chosen.candidate.text == "dog faces"
    assert described.chosen.score == pytest.approx(pmi_score(math.log(0.4), math.log(0.1)) + 0.5)
    assert described.confidence == pytest.approx(0.4)  # the evidence's, not the prior's


def test_bad_proposals_are_refused() -> None:
    with pytest.raises(ValueError, match="evidence type"):
        Candidate("x", 0.0, "vibes")
    with pytest.raises(ValueError, match="proposed nothing"):
        select([1], [[]], {})


def test_the_prior_is_each_layers_own() -> None:
    """"large areas" is what every unit of a coarse layer shows, and few units of a fine one."""
    coarse = [[_c("large areas", 0.9), _c(f"thing {i}", 0.3)] for i in range(10)]
    fine = [[_c("large areas", 0.9), _c("thing x", 0.3)]] + [[_c(f"other {i}", 0.5)] for i in range(9)]
    layers = ["coarse"] * 10 + ["fine"] * 10
    priors = layer_priors(evidence_prior, coarse + fine, layers)
    assert priors[0]["large areas"] == pytest.approx(math.log(0.9))
    assert priors[10]["large areas"] == pytest.approx(math.log(0.1))
    described = select(list(range(20)), coarse + fine, priors, lam=1.0)
    assert all(d.chosen.candidate.text.startswith("thing") for d in described[:10])
    assert described[10].chosen.candidate.text == "large areas"


def test_no_description_holds_more_than_its_share_of_a_layer_unless_nothing_else_is_significant() -> None:
    # 20 units all prefer "large areas"; 12 have a significant alternative of their own, 8 do not
    proposals = [[_c("large areas", 0.9 - i / 100, 0.01), _c(f"own {i}", 0.2, 0.02 if i < 12 else 0.5)]
                 for i in range(20)]
    described = select(list(range(20)), proposals, {**{f"own {i}": 0.0 for i in range(20)}, "large areas": 0.0})
    assert layer_shares(described, ["a"] * 20)["a"] == ("large areas", 1.0)
    spread = spread_layer_shares(described, ["a"] * 20)
    texts = [d.chosen.candidate.text for d in spread]
    # the 3 (15% of 20) with the clearest claim keep it, as do the 8 with nothing better than chance
    assert texts[:3] == ["large areas"] * 3 and texts[3:12] == [f"own {i}" for i in range(3, 12)]
    assert texts[12:] == ["large areas"] * 8
    assert {c.candidate.text for c in spread[5].ranked} == {"large areas", "own 5"}  # the loser is kept
    assert layer_shares(spread, ["a"] * 20)["a"] == ("large areas", 11 / 20)


def test_a_candidate_no_better_than_chance_never_outranks_one_that_is() -> None:
    proposals = [[_c("text", 0.6, 0.2), _c("the right edge of the image", 0.3, 0.01), _c("unclear", 0.05)],
                 [_c("text", 0.6, 0.2), _c("unclear", 0.05)]]
    prior = {"text": math.log(0.5), "the right edge of the image": math.log(0.5), "unclear": math.log(0.05)}
    first, second = select([1, 2], proposals, prior)
    assert first.chosen.candidate.text == "the right edge of the image" and first.ranked[-1].candidate.text == "text"
    assert second.chosen.candidate.text == "unclear"  # the honest label when nothing beats chance


def _vectors(texts: list[str]) -> dict[str, list[float]]:
    return {text: vector.tolist() for text, vector in zip(texts, cached_embed(texts))}


def test_agreement_takes_the_description_closest_to_the_likely_ones_and_keeps_a_clear_winner() -> None:
    """Real MiniLM vectors: a unit whose likely candidates are three ways of saying dog faces and
    one unrelated object scored a little higher gets a dog-face description; a unit whose object
    stands far above the rest keeps it; chance-level candidates stay last whatever they mean."""
    close = [_c("tennis ball", 0.50), _c("dog faces", 0.45), _c("heads of dogs", 0.44), _c("animal faces", 0.43),
             _c("faces of dogs", 0.6, significance=0.5)]
    clear = [_c("tennis ball", 0.90), _c("dog faces", 0.10), _c("heads of dogs", 0.10), _c("animal faces", 0.10)]
    texts = sorted({c.text for c in close + clear})
    described = select([1, 2], [close, clear], {text: 0.0 for text in texts})
    assert described[0].chosen.candidate.text == "tennis ball"  # PMI's argmax, by a small margin
    agreed = agree(described, _vectors(texts))
    assert agreed[0].chosen.candidate.text in {"dog faces", "heads of dogs", "animal faces"}
    assert agreed[0].ranked[-1].candidate.text == "faces of dogs" and agreed[0].ranked[-1].agreement is None
    assert agreed[1].chosen.candidate.text == "tennis ball"
    values = [s.agreement for s in agreed[0].ranked[:-1]]
    assert values == sorted(values, reverse=True) and agreed[0].chosen.score == pytest.approx(math.log(0.45), abs=0.02)


def test_a_likely_part_that_entails_the_winner_wins_and_one_at_chance_or_of_another_animal_does_not() -> None:
    """Real MiniLM vectors: "dog" is central among a unit's dog candidates, so ``agree`` keeps it;
    "dog faces" entails "dog" and is better than chance, so it is the more specific true description.
    Not when the part is no better than chance, nor when it is a bird's (it does not entail "dog")."""
    entailed = {"dog faces": frozenset({"dog", "canine", "animal"}), "heads of birds": frozenset({"bird", "animal"})}
    likely = [_c("dog", 0.6, 0.02), _c("canine", 0.3, 0.02), _c("dog faces", 0.35, 0.02), _c("tennis ball", 0.2, 0.02)]
    at_chance = [_c("dog", 0.6, 0.02), _c("canine", 0.3, 0.02), _c("dog faces", 0.35, 0.3)]
    other_animal = [_c("dog", 0.6, 0.02), _c("canine", 0.3, 0.02), _c("heads of birds", 0.35, 0.02)]
    proposals = [likely, at_chance, other_animal]
    texts = sorted({c.text for unit in proposals for c in unit})
    agreed = agree(select([1, 2, 3], proposals, {text: 0.0 for text in texts}), _vectors(texts))
    assert [d.chosen.candidate.text for d in agreed] == ["dog", "dog", "dog"]
    preferred = prefer_specific(agreed, entailed)
    assert [d.chosen.candidate.text for d in preferred] == ["dog faces", "dog", "dog"]
    assert {s.candidate.text for s in preferred[0].ranked} == {"dog", "canine", "dog faces", "tennis ball"}
    assert preferred[0].ranked[1].candidate.text == "dog"  # the entailed winner is kept, next in rank
    assert prefer_specific(agreed, {}) == agreed  # a describer without entailments changes nothing
