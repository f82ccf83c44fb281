"""milan_core.catalog.search on a real dissected catalog with real MiniLM vectors."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from described import CANDIDATE_FACE_UNIT, DESCRIBER

from milan_core.applications.audit import matching_units
from milan_core.catalog import Catalog
from milan_core.catalog.notes import Notes
from milan_core.catalog.search import DEFAULT_MIN_SIMILARITY, count_matches, nearest_units, query_terms, search_units
from milan_core.embedding import embed
from milan_core.errors import UserError

HOSTILE_QUERIES = (
    "face' OR 1=1 --",
    '"; DROP TABLE units; --',
    "'); DELETE FROM descriptions WHERE ('1'='1",
    "face%_\\ [a-z]+ (?i) .* $1 ?",
    "x" * 10_000,
    "😀 faces 🙂" * 50,
    "\x00face\n\t",
)


@pytest.fixture()
def catalog(described_catalog: Path):
    with Catalog(described_catalog) as opened:
        yield opened


def test_face_finds_the_face_units_first(catalog: Catalog) -> None:
    found = search_units(catalog, "face")
    assert list(found.key[:2]) == ["blocks.6:17", "blocks.6:42"]  # "human faces", "spotted dog faces"
    assert found.keyword_hit[:2].all()
    assert "description says 'face'" in found.reason[0]


def test_a_losing_candidate_that_says_the_word_matches_only_when_asked(catalog: Catalog) -> None:
    assert CANDIDATE_FACE_UNIT not in set(search_units(catalog, "face").key)  # described "small spots" etc.
    found = search_units(catalog, "face", candidates=True).set_index("key")
    assert "face" not in found.description[CANDIDATE_FACE_UNIT]
    assert "candidate 'face close-ups'" in found.reason[CANDIDATE_FACE_UNIT]
    assert found.match[CANDIDATE_FACE_UNIT] == "keyword"


def test_meaning_alone_finds_a_description_without_the_word_listed_as_related(catalog: Catalog) -> None:
    found = search_units(catalog, "faces", min_similarity=0.4).set_index("key")
    portraits = found.loc["blocks.6:100"]
    assert portraits.description == "portraits of people" and not portraits.keyword_hit
    assert portraits.similarity > 0.4 and "meaning close" in portraits.reason and portraits.match == "related"
    assert found.index.get_loc("blocks.6:100") > found.index.get_loc("blocks.6:17")
    # at the default threshold (0.5) a 0.42 look-alike is not a match
    assert DEFAULT_MIN_SIMILARITY == 0.5 and "blocks.6:100" not in set(search_units(catalog, "faces").key)


def test_keyword_matches_come_before_every_related_one(catalog: Catalog) -> None:
    found = search_units(catalog, "faces", min_similarity=0.15, limit=None)
    kinds = found.match.tolist()
    assert "keyword" in kinds and "related" in kinds
    assert kinds == sorted(kinds)  # 'keyword' < 'related': no related unit above a keyword one
    related = found[found.match == "related"]
    assert list(related.similarity) == sorted(related.similarity, reverse=True)
    assert (related.similarity >= 0.15).all() and len(related) > 14
    paged = [search_units(catalog, "faces", min_similarity=0.15, limit=7, offset=o).key.tolist() for o in (0, 7)]
    assert paged[0] + paged[1] == found.key.tolist()[:14]


@pytest.mark.parametrize("candidates", [False, True])
@pytest.mark.parametrize("query", ["face", "faces", "dog", "stripes", "sky", "people", "wheel"])
def test_search_count_and_audit_agree(catalog: Catalog, query: str, candidates: bool) -> None:
    run_ids = [catalog.run().run_id]
    total = len(search_units(catalog, query, candidates=candidates, limit=None))
    counted = int(count_matches(catalog, query, candidates=candidates).matches.sum())
    try:
        audited = len(matching_units(catalog, query, run_ids, candidates=candidates))
    except UserError:
        audited = 0
    assert total == counted == audited


def test_keywords_match_word_starts_only(catalog: Catalog) -> None:
    assert query_terms("The Faces of a surface") == ["faces", "surface"]
    found = search_units(catalog, "ace", min_similarity=1.0)  # keyword matches only
    assert found.empty  # "faces" does not start with "ace"


def test_filters_narrow_the_set(catalog: Catalog) -> None:
    everything = search_units(catalog, "", limit=5)
    total = int(everything.total[0])
    assert total == len(catalog.units())
    layer = search_units(catalog, "", layers=["blocks.2"], limit=None)
    assert set(layer.layer) == {"blocks.2"} and len(layer) == 40
    scene = search_units(catalog, "", layers="blocks.6", evidence_types=["scene"], limit=None)
    assert set(scene.evidence_type) == {"scene"} and 0 < len(scene) < 320
    confident = search_units(catalog, "", layers="blocks.6", evidence_types=["scene"], min_confidence=0.5, limit=None)
    assert 0 < len(confident) < len(scene) and (confident.confidence >= 0.5).all()
    iou = search_units(catalog, "", min_iou=0.2, limit=None)
    assert (iou.best_iou >= 0.2).all() and "blocks.6:17" in set(iou.key)
    strong = search_units(catalog, "", min_act_max=float(layer.act_max.median()), layers=["blocks.2"], limit=None)
    assert 0 < len(strong) < 40
    assert search_units(catalog, "face", layers=["blocks.2"]).empty


def test_paging_walks_the_same_ranking(catalog: Catalog) -> None:
    whole = search_units(catalog, "", layers=["blocks.2"], limit=None)
    pages = [search_units(catalog, "", layers=["blocks.2"], limit=24, offset=o) for o in (0, 24)]
    assert list(pages[0].key) + list(pages[1].key) == list(whole.key)
    assert set(pages[0].total) == {40}


def test_count_matches_per_layer(catalog: Catalog) -> None:
    counts = count_matches(catalog, "face").set_index("layer")
    assert counts.matches.to_dict() == {"blocks.2": 0, "blocks.6": 2, "classifier": 0}
    with_candidates = count_matches(catalog, "face", candidates=True).set_index("layer")
    assert with_candidates.matches.to_dict() == {"blocks.2": 0, "blocks.6": 3, "classifier": 0}
    assert counts.units.to_dict() == {"blocks.2": 40, "blocks.6": 320, "classifier": 1000}


def test_nearest_units_share_meaning(catalog: Catalog) -> None:
    run_id = catalog.run().run_id
    nearest = nearest_units(catalog, catalog.unit_id(run_id, "blocks.6:17"), DESCRIBER, limit=2)
    assert set(nearest.description) == {"spotted dog faces", "portraits of people"}


def test_unknown_filter_is_a_user_error(catalog: Catalog) -> None:
    with pytest.raises(UserError, match="unknown search filter"):
        search_units(catalog, "face", colour="red")


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
def test_hostile_queries_change_nothing(
    described_catalog: Path, file_hash: Callable[[Path], str], query: str
) -> None:
    before = file_hash(described_catalog)
    with Catalog(described_catalog) as catalog:
        found = search_units(catalog, query, layers=[query], evidence_types=[query])
        assert found.empty  # a layer or evidence type named like that does not exist
        search_units(catalog, query)
        count_matches(catalog, query)
        assert len(catalog.units()) == 1360
    assert file_hash(described_catalog) == before


def test_a_rewritten_catalog_is_searched_afresh(described_catalog: Path, tmp_path: Path) -> None:
    copy = tmp_path / "catalog.duckdb"
    shutil.copy(described_catalog, copy)
    with Catalog(copy) as catalog:
        assert search_units(catalog, "zebra", min_similarity=1.0).empty  # builds the in-memory index
        unit_id = catalog.unit_id(catalog.run().run_id, "blocks.2:5")
    with Catalog(copy, writable=True) as catalog, catalog.transaction() as con:
        con.execute(
            "UPDATE descriptions SET description = 'zebra stripes', embedding = ? WHERE unit_id = ?",
            [embed(["zebra stripes"])[0].tolist(), unit_id],
        )
    with Catalog(copy) as catalog:
        found = search_units(catalog, "zebra", min_similarity=1.0)  # keyword hits only
        assert list(found.key) == ["blocks.2:5"] and found.similarity[0] > 0.7


def test_a_persons_label_is_found_like_a_description(described_catalog: Path, tmp_path: Path) -> None:
    path = tmp_path / "catalog.duckdb"
    shutil.copy(described_catalog, path)
    with Catalog(path) as catalog:
        run_id = catalog.run().run_id
        assert search_units(catalog, "helmet").empty
        Notes(path).add_label(run_id, "blocks.2:5", "Helmets, knee pads", "ann")  # described "car wheels"
        found = search_units(catalog, "helmet")
        assert found.key.tolist() == ["blocks.2:5"] and found.match[0] == "keyword"
        assert found.reason[0] == "matched a note: label 'Helmets, knee pads'"
        assert int(count_matches(catalog, "helmet").matches.sum()) == 1  # audit's count agrees
        assert search_units(catalog, "helmet", notes=False).empty
        assert search_units(catalog, "wheels").key.tolist() == ["blocks.2:5"]  # its description still counts
