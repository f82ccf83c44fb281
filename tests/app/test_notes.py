"""milan_core.catalog.notes: votes and labels in their own file, and concurrent writers lose nothing."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from milan_core.catalog.notes import Notes, notes_path
from milan_core.errors import UserError

WRITES = 60


def _write_many(catalog: str, author: str) -> None:
    notes = Notes(catalog)
    for i in range(WRITES):
        notes.vote("run", f"blocks.6:{i}", "evidence", "dogs", 1 if i % 2 else -1, author)
        notes.add_label("run", f"blocks.6:{i}", f"{author} label {i}", author)


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.duckdb"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(catalog), author)) for author in ("ann", "bob")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    notes = Notes(catalog)
    votes = notes.vote_counts()
    assert len(votes) == WRITES and int(votes.agree.sum() + votes.disagree.sum()) == 2 * WRITES
    assert set(votes.agree + votes.disagree) == {2}
    labels = notes.unit_labels().set_index("unit_key").labels
    assert len(labels) == WRITES and labels["blocks.6:7"].count("label 7") == 2
    assert not catalog.exists()  # the catalog itself is never written or created


def test_a_persons_latest_vote_counts_and_reading_creates_nothing(tmp_path: Path) -> None:
    notes = Notes(tmp_path / "c.duckdb")
    assert notes.vote_counts().empty and notes.labels("r", "x:1").empty and notes.author_vote("r", "x:1", "d", "a") == 0
    assert not notes_path(tmp_path / "c.duckdb").exists()
    notes.vote("r", "x:1", "e", "dogs", 1, "ann")
    notes.vote("r", "x:1", "e", "dogs", -1, "ann")
    notes.vote("r", "x:1", "e", "cats", 1, "ann")  # a vote is on one description: re-described, it starts afresh
    counts = notes.vote_counts().set_index("description")
    assert counts.loc["dogs", ["agree", "disagree"]].tolist() == [0, 1] and counts.loc["cats", "agree"] == 1
    assert notes.author_vote("r", "x:1", "dogs", "ann") == -1
    with pytest.raises(UserError, match="a vote is"):
        notes.vote("r", "x:1", "e", "dogs", 5, "ann")
    with pytest.raises(UserError, match="at least one word"):
        notes.add_label("r", "x:1", "   ", "ann")
    notes.add_label("r", "x:1", "  knee\n pad  " + "x" * 500, "ann")
    assert notes.labels("r", "x:1").label[0].startswith("knee pad x") and len(notes.labels("r", "x:1").label[0]) == 200
