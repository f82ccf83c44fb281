"""People's votes and labels on units, in a file of their own beside the catalog.

A person browsing the catalog can agree or disagree with a unit's description and write a label
of their own. These live in ``CATALOG.notes.sqlite`` (SQLite, from the standard library), not in
the catalog: the app keeps the catalog read-only, and re-dissecting or re-describing rewrites the
catalog's rows but never touches the notes. Units are named by run and ``layer:unit`` (what a
re-dissection keeps), not by the catalog's internal ``unit_id``.

Nothing is ever updated or deleted, only appended, each write in its own ``BEGIN IMMEDIATE``
transaction with a generous busy timeout, in WAL mode: two browser tabs (or two servers) voting at
once both land. A person's latest vote on a unit's description is the one that counts.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from milan_core.errors import UserError

NOTES_SUFFIX = ".notes.sqlite"
#: How long a writer waits for another writer's transaction before giving up (seconds).
BUSY_TIMEOUT = 30.0
#: Longest label kept (a label is a phrase, not an essay).
MAX_LABEL_CHARS = 200

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS votes (
        vote_id      INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id       TEXT NOT NULL,
        unit_key     TEXT NOT NULL,
        describer    TEXT,
        description  TEXT NOT NULL,
        vote         INTEGER NOT NULL CHECK (vote IN (-1, 1)),
        author       TEXT NOT NULL,
        created_at   TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS labels (
        label_id     INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id       TEXT NOT NULL,
        unit_key     TEXT NOT NULL,
        label        TEXT NOT NULL,
        author       TEXT NOT NULL,
        created_at   TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS votes_unit ON votes (run_id, unit_key)",
    "CREATE INDEX IF NOT EXISTS labels_unit ON labels (run_id, unit_key)",
)

#: Per unit and description voted on: agree and disagree counts, each author's latest vote counting.
VOTE_COUNTS_SQL = """
    SELECT run_id, unit_key, description, sum(vote = 1) AS agree, sum(vote = -1) AS disagree
    FROM votes v
    WHERE vote_id = (SELECT max(vote_id) FROM votes w WHERE w.run_id = v.run_id AND w.unit_key = v.unit_key
                     AND w.description = v.description AND w.author = v.author)
    GROUP BY run_id, unit_key, description
"""

#: Per unit: its labels, newest first, joined by " · ".
UNIT_LABELS_SQL = """
    SELECT run_id, unit_key, group_concat(label, ' · ') AS labels
    FROM (SELECT * FROM labels ORDER BY label_id DESC) GROUP BY run_id, unit_key
"""


def notes_path(catalog_path: str | Path) -> Path:
    """Where a catalog's notes live: ``catalog.duckdb`` -> ``catalog.duckdb.notes.sqlite``."""
    path = Path(catalog_path)
    return path.with_name(path.name + NOTES_SUFFIX)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Notes:
    """The notes file of one catalog. Reading a file that does not exist yet finds no notes."""

    def __init__(self, catalog_path: str | Path) -> None:
        self.path = notes_path(catalog_path)

    def version(self) -> tuple[int, ...]:
        """What changes whenever a note is written: the size and modification time of the file and of
        its write-ahead log (where WAL mode puts new rows first), so caches of searches that read
        labels can key on it without opening the file."""
        stamps: list[int] = []
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            stat = path.stat() if path.exists() else None
            stamps += [stat.st_mtime_ns, stat.st_size] if stat else [0, 0]
        return tuple(stamps)

    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as error:
            raise UserError(f"cannot open the notes file {self.path}: {error}") from error
        return con

    def _append(self, sql: str, params: tuple) -> None:
        """One appended row in its own transaction (created on first write)."""
        with closing(self._connect()) as con:
            try:
                con.execute("BEGIN IMMEDIATE")
                for statement in SCHEMA:
                    con.execute(statement)
                con.execute(sql, params)
                con.execute("COMMIT")
            except sqlite3.Error as error:
                con.rollback()
                raise UserError(f"could not save to the notes file {self.path}: {error}") from error

    def vote(self, run_id: str, unit_key: str, describer: str | None, description: str, vote: int, author: str) -> None:
        """Record ``author`` agreeing (+1) or disagreeing (-1) with the unit's description."""
        if vote not in (-1, 1):
            raise UserError(f"a vote is +1 or -1, not {vote!r}")
        self._append(
            "INSERT INTO votes (run_id, unit_key, describer, description, vote, author, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, unit_key, describer, description, int(vote), author, _now()),
        )

    def add_label(self, run_id: str, unit_key: str, label: str, author: str) -> None:
        """Record ``author``'s own label for the unit (stripped, at most MAX_LABEL_CHARS)."""
        label = " ".join(label.split())[:MAX_LABEL_CHARS]
        if not label:
            raise UserError("a label needs at least one word")
        self._append(
            "INSERT INTO labels (run_id, unit_key, label, author, created_at) VALUES (?, ?, ?, ?, ?)",
            (run_id, unit_key, label, author, _now()),
        )

    def _read(self, sql: str, params: tuple = ()) -> pd.DataFrame | None:
        if not self.path.is_file():
            return None
        with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)) as con:
            has_tables = con.execute("SELECT count(*) FROM sqlite_master WHERE name IN ('votes', 'labels')").fetchone()[
                0
            ]
            return pd.read_sql_query(sql, con, params=params) if has_tables == 2 else None

    def vote_counts(self) -> pd.DataFrame:
        """run_id, unit_key, description, agree, disagree: every description anyone voted on."""
        return self._frame(VOTE_COUNTS_SQL, (), ["run_id", "unit_key", "description", "agree", "disagree"])

    def unit_labels(self) -> pd.DataFrame:
        """run_id, unit_key, labels (newest first, joined by " · "): every labelled unit."""
        return self._frame(UNIT_LABELS_SQL, (), ["run_id", "unit_key", "labels"])

    def _frame(self, sql: str, params: tuple, columns: list[str]) -> pd.DataFrame:
        frame = self._read(sql, params)
        return pd.DataFrame(columns=columns) if frame is None else frame[columns]

    def labels(self, run_id: str, unit_key: str) -> pd.DataFrame:
        """A unit's labels, newest first: label, author, created_at."""
        return self._frame(
            "SELECT label, author, created_at FROM labels WHERE run_id = ? AND unit_key = ? ORDER BY label_id DESC",
            (run_id, unit_key),
            ["label", "author", "created_at"],
        )

    def author_vote(self, run_id: str, unit_key: str, description: str, author: str) -> int:
        """``author``'s latest vote on the unit's description: +1, -1 or 0 (none)."""
        frame = self._frame(
            "SELECT vote FROM votes WHERE run_id = ? AND unit_key = ? AND description = ? AND author = ? "
            "ORDER BY vote_id DESC LIMIT 1",
            (run_id, unit_key, description, author),
            ["vote"],
        )
        return 0 if frame.empty else int(frame.vote.iloc[0])
