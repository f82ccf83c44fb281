"""Stage 6: the DuckDB catalog file — opened safely, refused with a sentence when it cannot be used.

Writers open the file only for the moment they write, inside one transaction, so an interrupted
job leaves the catalog as it was and a reader (the app) can open it read-only the rest of the time.
A writer that finds the file held by another process retries with backoff for ``LOCK_WAIT``
seconds (the app holds its read-only connection only while a page is drawn). ``check_writable``
finds, before a long job starts, everything that would stop its final write.

``Catalog`` combines the query modules: ``runs`` (runs, layers, run_images), ``units`` (units,
exemplars, images), ``descriptions`` (descriptions, candidates) and ``results`` (audits,
ablations, edits). The schema is in ``schema``, its history in ``migrate``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import duckdb

from milan_core.catalog.descriptions import DescriptionQueries
from milan_core.catalog.results import ResultQueries
from milan_core.catalog.runs import MAKE_ONE, RunQueries
from milan_core.catalog.schema import DDL, SCHEMA_VERSION
from milan_core.catalog.units import UnitQueries
from milan_core.config import LOCK_WAIT
from milan_core.errors import UserError

#: DuckDB's default 256 KB blocks would cost each written run several mostly empty blocks (runs,
#: layers, units); 16 KB blocks keep a catalog close to its payload (measured in bench/).
BLOCK_SIZE = 16384
FIRST_RETRY = 0.25  # seconds before the first retry on a locked file; each next wait doubles


def _create_file(path: Path) -> None:
    """An empty DuckDB file with small blocks (the block size is fixed when a file is made).

    ATTACH takes no bound parameters, so the path is quoted as a SQL string literal.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    literal = "'" + str(path).replace("'", "''") + "'"
    with duckdb.connect() as con:
        con.execute(f"ATTACH {literal} AS fresh (BLOCK_SIZE {BLOCK_SIZE})")
        con.execute("DETACH fresh")


def _is_lock(error: duckdb.Error) -> bool:
    return "lock" in str(error).lower()


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def connect(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """A connection to the file, retrying with backoff for ``wait`` seconds while another process
    holds it; a UserError in one line when it cannot be had."""
    delay, deadline = FIRST_RETRY, time.monotonic() + wait
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            remaining = deadline - time.monotonic()
            if _is_lock(error) and remaining > 0:
                time.sleep(min(delay, remaining))
                delay *= 2
                continue
            if _is_lock(error):
                held = f" for {wait:.0f} s" if wait else ""
                raise UserError(
                    f"the catalog {path} is in use by another process{held} ({_first_line(error)}); "
                    "close it or wait, then run the command again"
                ) from error
            if "not a valid duckdb database" in str(error).lower():
                raise UserError(f"{path} is not a DuckDB catalog ({_first_line(error)})") from error
            raise UserError(f"cannot open the catalog {path}: {_first_line(error)}") from error
        except duckdb.Error as error:
            raise UserError(f"{path} is not a DuckDB catalog ({_first_line(error)})") from error


class Catalog(RunQueries, UnitQueries, DescriptionQueries, ResultQueries):
    """A catalog file. Read-only by default; ``writable=True`` creates it when missing.

    A file of an older schema is refused with the ``migrate`` command to run (``migrating=True``
    is for that command); one of a newer schema, or a DuckDB file holding other tables, too.
    """

    def __init__(self, path: str | Path, writable: bool = False, wait: float | None = None,
                 migrating: bool = False) -> None:
        self.path = Path(path)
        if not writable and not self.path.is_file():
            raise UserError(f"no catalog at {self.path}; {MAKE_ONE.format(path=self.path)}")
        if writable and not self.path.exists():
            try:
                _create_file(self.path)
            except OSError as error:
                raise UserError(f"cannot create the catalog {self.path}: {_first_line(error)}") from error
        self.con = connect(self.path, not writable, (LOCK_WAIT if writable else 0.0) if wait is None else wait)
        try:
            self._check_version(writable, migrating)
        except BaseException:
            self.close()
            raise

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------------

    def schema_version(self) -> int | None:
        """The file's schema version, or None for a file with no catalog in it."""
        if not self.scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"):
            return None
        value = self.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        return None if value is None else int(value)

    def _check_version(self, writable: bool, migrating: bool) -> None:
        version = self.schema_version()
        if version is None:
            if writable and not self.scalar("SELECT count(*) FROM information_schema.tables"):
                self._create_schema()
                return
            raise UserError(f"{self.path} holds no catalog; {MAKE_ONE.format(path=self.path)}")
        if version > SCHEMA_VERSION:
            raise UserError(
                f"{self.path} has catalog schema {version}, newer than this code's {SCHEMA_VERSION}; "
                "upgrade milan_core (pip install -r requirements.txt in a newer checkout)"
            )
        if version < SCHEMA_VERSION and not migrating:
            raise UserError(
                f"{self.path} has catalog schema {version}; migrate it once with: "
                f"python -m milan_core migrate --catalog {self.path}"
            )

    def _create_schema(self) -> None:
        with self.transaction() as con:
            for statement in DDL:
                con.execute(statement)
            self.insert_row("meta", {"key": "schema_version", "value": str(SCHEMA_VERSION)})


def check_writable(path: Path) -> None:
    """Fail now, in one line, if the catalog at ``path`` could not be written at the end of a job:
    a folder in its place, a folder that cannot be written (read-only disk, permissions), a file
    that is not a catalog of this schema, or a file another process holds."""
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a catalog file name such as {path / 'catalog.duckdb'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent, prefix=f".{path.name}.check-"):
            pass
    except OSError as error:
        raise UserError(f"cannot write the catalog's folder {path.parent}: {_first_line(error)}") from error
    if path.exists():
        Catalog(path, writable=True, wait=0.0).close()
