"""The PMI selection rule shared by every describer."""

from __future__ import annotations

import math

import pytest

from milan_core.describe.base import Candidate, evidence_prior, pmi_score, select


def _c(text: str, p: float) -> Candidate:
    return Candidate(text, math.log(p), "object", {})


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


def test_bad_proposals_are_refused() -> None:
    with pytest.raises(ValueError, match="evidence type"):
        Candidate("x", 0.0, "vibes")
    with pytest.raises(ValueError, match="proposed nothing"):
        select([1], [[]], {})
