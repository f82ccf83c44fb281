"""What every part of the catalog shares: the open connection, transactions, and writing rows by name.

Each query module (``runs``, ``units``, ``descriptions``, ``results``) is a mixin over this class,
and ``connection.Catalog`` combines them, so ``catalog.units(...)`` and ``catalog.store_audit(...)``
are methods of one handle while each module holds only the SQL of its own tables. Rows are always
inserted with their columns named, never by position, so adding a column cannot shift values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from milan_core.catalog.schema import CASCADE


class CatalogBase:
    """An open catalog file (``connection.Catalog`` opens it)."""

    path: Path
    con: duckdb.DuckDBPyConnection

    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """A parameterised query as a DataFrame."""
        return self.con.execute(sql, list(params)).df()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None when there is no row)."""
        row = self.con.execute(sql, list(params)).fetchone()
        return None if row is None else row[0]

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing: commit when the block ends, roll back if it raises."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def insert_row(self, table: str, values: Mapping[str, Any], stamped: Sequence[str] = ()) -> None:
        """One row with its columns named; the ``stamped`` columns get the current time."""
        columns = [*values, *stamped]
        marks = ["?"] * len(values) + ["now()"] * len(stamped)
        self.con.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marks)})", list(values.values())
        )

    def insert_frame(self, table: str, frame: pd.DataFrame, columns: Sequence[str] | None = None) -> None:
        """Every row of ``frame`` into ``table``, matched by column name (default: all of the frame's)."""
        names = ", ".join(columns if columns is not None else frame.columns)
        self.con.register("incoming_rows", frame)
        try:
            self.con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM incoming_rows")
        finally:
            self.con.unregister("incoming_rows")

    def cascade(self, table: str, where: str, only: frozenset[str] | None = None) -> list[tuple[str, str]]:
        """(table, condition) pairs for the rows of ``table`` matching ``where`` and every row that
        belongs to them through ``schema.CASCADE``, owned rows first. ``only`` limits the tables.

        Each condition holds the one ``?`` of ``where``, so every pair runs with the same parameter.
        """
        pairs = []
        for link in CASCADE:
            if link.parent == table and (only is None or link.table in only):
                owned = f"{link.column} IN (SELECT {link.parent_key} FROM {table} WHERE {where})"
                pairs.extend(self.cascade(link.table, owned, only))
        return [*pairs, (table, where)]

    def delete_cascade(self, table: str, where: str, value: Any, only: frozenset[str] | None = None) -> None:
        """Delete the rows of ``table`` matching ``where`` (one ``?``, bound to ``value``) and all they own."""
        for owned, condition in self.cascade(table, where, only):
            self.con.execute(f"DELETE FROM {owned} WHERE {condition}", [value])
