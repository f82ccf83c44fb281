"""Stage 6: the DuckDB catalog — one file, several runs, written in transactions, read back simply.

Writers open the file only for the moment they write, inside one transaction, so an interrupted
job leaves the catalog as it was and a reader (the app) can open it read-only the rest of the time.
The schema lives in ``milan_core.catalog.schema``; this module applies it, checks its version, and offers a
small typed API: ``Catalog(path).units(...)``, ``.exemplars(unit_id)``, ``.image(image_id)``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd

from milan_core.errors import UserError
from milan_core.exemplars import dequantise
from milan_core.catalog.schema import DDL, MIGRATIONS, SCHEMA_VERSION

MAKE_ONE = "make one with: python -m milan_core dissect --out {path}"

#: DuckDB's default 256 KB blocks would cost each written run several mostly empty blocks (runs,
#: layers, units); 16 KB blocks keep a catalog close to its payload (measured in bench/).
BLOCK_SIZE = 16384


@dataclass(frozen=True)
class ImageRecord:
    """A stored probe image (the thumbnail is a JPEG of the model's view)."""

    image_id: int
    sha256: str
    path: str
    width: int
    height: int
    label: str | None
    thumbnail: bytes


@dataclass(frozen=True)
class RunRecord:
    """What one dissection was: the model, its layers, the probe set and every parameter."""

    run_id: str
    model: str
    layers: list[str]
    probe_root: str
    config: dict[str, Any]
    code_version: str
    n_images: int
    n_skipped: int
    seconds: float
    timings: dict[str, float]


@dataclass
class RunTables:
    """A whole run's results, ready to be written in one transaction.

    ``units`` has the ``units`` table's columns but ``unit_id`` (given on insert); ``exemplars``
    names its unit by (layer, unit) and its image by ``sha256``; ``images`` has the ``images``
    columns but ``image_id``.
    """

    run: RunRecord
    layers: pd.DataFrame
    units: pd.DataFrame
    images: pd.DataFrame
    exemplars: pd.DataFrame


def _create_file(path: Path) -> None:
    """An empty DuckDB file with small blocks (the block size is fixed when a file is made).

    ATTACH takes no bound parameters, so the path is quoted as a SQL string literal.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    literal = "'" + str(path).replace("'", "''") + "'"
    with duckdb.connect() as con:
        con.execute(f"ATTACH {literal} AS fresh (BLOCK_SIZE {BLOCK_SIZE})")
        con.execute("DETACH fresh")


class Catalog:
    """A catalog file. Read-only by default; ``writable=True`` creates and migrates it."""

    def __init__(self, path: str | Path, writable: bool = False) -> None:
        self.path = Path(path)
        if not writable and not self.path.is_file():
            raise UserError(f"no catalog at {self.path}; {MAKE_ONE.format(path=self.path)}")
        if writable and not self.path.exists():
            _create_file(self.path)
        try:
            self.con = duckdb.connect(str(self.path), read_only=not writable)
        except duckdb.IOException as error:
            message = str(error).splitlines()[0]
            raise UserError(f"cannot open the catalog {self.path}: {message}") from error
        except duckdb.Error as error:
            raise UserError(f"{self.path} is not a DuckDB catalog ({str(error).splitlines()[0]})") from error
        if writable:
            self._apply_schema()
        else:
            self._check_version()

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    # -- schema ---------------------------------------------------------------------------------

    def schema_version(self) -> int | None:
        """The file's schema version, or None for a file with no catalog in it."""
        has_meta = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
        ).fetchone()[0]
        if not has_meta:
            return None
        row = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else None

    def _check_version(self) -> None:
        version = self.schema_version()
        if version is None:
            self.close()
            raise UserError(f"{self.path} holds no catalog; {MAKE_ONE.format(path=self.path)}")
        if version > SCHEMA_VERSION:
            self.close()
            raise UserError(
                f"{self.path} has catalog schema {version}, newer than this code's {SCHEMA_VERSION}; "
                "upgrade milan_core (pip install -r requirements.txt in a newer checkout)"
            )
        if version < SCHEMA_VERSION:
            self.close()
            raise UserError(
                f"{self.path} has catalog schema {version}; migrate it once with: "
                f"python -m milan_core migrate --catalog {self.path}"
            )

    def _apply_schema(self) -> None:
        version = self.schema_version()
        if version is not None and version > SCHEMA_VERSION:
            self.close()
            raise UserError(f"{self.path} has catalog schema {version}, newer than this code's {SCHEMA_VERSION}")
        with self.transaction() as con:
            for step in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    con.execute(statement)
            for statement in DDL:
                con.execute(statement)
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
            )

    # -- writing --------------------------------------------------------------------------------

    def _delete_run(self, con: duckdb.DuckDBPyConnection, run_id: str) -> None:
        unit_ids = "SELECT unit_id FROM units WHERE run_id = ?"
        for table in ("exemplars", "descriptions", "candidates", "audit_units"):
            con.execute(f"DELETE FROM {table} WHERE unit_id IN ({unit_ids})", [run_id])
        ablations = "SELECT ablation_id FROM ablations WHERE run_id = ?"
        for table in ("ablation_curves", "ablation_checks"):
            con.execute(f"DELETE FROM {table} WHERE ablation_id IN ({ablations})", [run_id])
        for table in ("ablations", "edits"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        for table in ("units", "layers", "runs"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])

    def write_run(self, tables: RunTables) -> None:
        """Write (or replace) one run in a single transaction."""
        run = tables.run
        with self.transaction() as con:
            self._delete_run(con, run.run_id)
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, now(), ?, ?, ?, ?)",
                [
                    run.run_id, run.model, run.layers, run.probe_root, json.dumps(run.config),
                    run.code_version, run.n_images, run.n_skipped, run.seconds, json.dumps(run.timings),
                ],
            )
            layers = tables.layers.assign(run_id=run.run_id)
            con.register("new_layers", layers)
            con.execute(
                "INSERT INTO layers SELECT run_id, layer, layer_index, kind, n_units, map_height, map_width "
                "FROM new_layers"
            )
            first_id = con.execute("SELECT coalesce(max(unit_id), 0) + 1 FROM units").fetchone()[0]
            units = tables.units.assign(run_id=run.run_id, unit_id=np.arange(first_id, first_id + len(tables.units)))
            con.register("new_units", units)
            con.execute(
                "INSERT INTO units SELECT unit_id, run_id, layer, unit, threshold, quantile, act_mean, "
                "act_std, act_min, act_max, hist_lo, hist_hi, hist FROM new_units"
            )
            con.register("new_images", tables.images)
            con.execute(
                "INSERT INTO images SELECT (SELECT coalesce(max(image_id), 0) FROM images) "
                "+ row_number() OVER (ORDER BY n.path), n.sha256, n.path, n.width, n.height, n.label, "
                "n.thumbnail FROM new_images n WHERE n.sha256 NOT IN (SELECT sha256 FROM images)"
            )
            con.register("new_exemplars", tables.exemplars)
            con.execute(
                "INSERT INTO exemplars SELECT u.unit_id, e.rank, i.image_id, e.activation, e.amap_min, "
                "e.amap_max, e.amap FROM new_exemplars e "
                "JOIN new_units u ON u.layer = e.layer AND u.unit = e.unit "
                "JOIN images i ON i.sha256 = e.sha256"
            )
            for view in ("new_layers", "new_units", "new_images", "new_exemplars"):
                con.unregister(view)

    # -- reading --------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """A parameterised query as a DataFrame."""
        return self.con.execute(sql, list(params)).df()

    def runs(self) -> pd.DataFrame:
        return self.query("SELECT * FROM runs ORDER BY created_at")

    def run(self, run_id: str | None = None) -> RunRecord:
        """One run by id; with no id, the only (or newest) run. A UserError names the known ones."""
        runs = self.runs()
        if runs.empty:
            raise UserError(f"{self.path} has no runs yet; {MAKE_ONE.format(path=self.path)}")
        if run_id is None:
            row = runs.iloc[-1]
        elif (runs.run_id == run_id).any():
            row = runs[runs.run_id == run_id].iloc[0]
        else:
            raise UserError(f"unknown run {run_id!r}; this catalog has: {', '.join(runs.run_id)}")
        return RunRecord(
            run_id=row.run_id, model=row.model, layers=list(row.layers), probe_root=row.probe_root,
            config=json.loads(row.config), code_version=row.code_version, n_images=int(row.n_images),
            n_skipped=int(row.n_skipped), seconds=float(row.seconds), timings=json.loads(row.timings),
        )

    def layers(self, run_id: str) -> pd.DataFrame:
        return self.query("SELECT * FROM layers WHERE run_id = ? ORDER BY layer_index", [run_id])

    def units(
        self, run_id: str | None = None, layer: str | None = None, limit: int | None = None, offset: int = 0
    ) -> pd.DataFrame:
        """Units with their statistics, optionally of one run and layer, in layer then unit order."""
        sql = (
            "SELECT u.*, u.layer || ':' || u.unit AS key FROM units u "
            "JOIN layers l USING (run_id, layer) "
            "WHERE (? IS NULL OR u.run_id = ?) AND (? IS NULL OR u.layer = ?) "
            "ORDER BY u.run_id, l.layer_index, u.unit LIMIT ? OFFSET ?"
        )
        return self.query(sql, [run_id, run_id, layer, layer, limit, offset])

    def unit_id(self, run_id: str, key: str) -> int:
        """The global id of ``layer:unit`` in a run."""
        layer, _, unit = key.rpartition(":")
        row = self.con.execute(
            "SELECT unit_id FROM units WHERE run_id = ? AND layer = ? AND unit = TRY_CAST(? AS INTEGER)",
            [run_id, layer, unit],
        ).fetchone()
        if row is None:
            raise UserError(f"no unit {key!r} in run {run_id!r} (units are named layer:index)")
        return int(row[0])

    def exemplars(self, unit_id: int, decode: bool = True) -> pd.DataFrame:
        """A unit's exemplars in rank order; with ``decode`` a ``map`` column of (H, W) float arrays."""
        frame = self.query(
            "SELECT e.*, i.path, i.label, u.threshold, l.map_height, l.map_width FROM exemplars e "
            "JOIN images i USING (image_id) JOIN units u USING (unit_id) "
            "JOIN layers l ON l.run_id = u.run_id AND l.layer = u.layer "
            "WHERE e.unit_id = ? ORDER BY e.rank",
            [unit_id],
        )
        if decode:
            frame["map"] = [
                dequantise(bytes(r.amap), r.amap_min, r.amap_max, r.map_height, r.map_width)
                for r in frame.itertuples()
            ]
        return frame

    def image(self, image_id: int) -> ImageRecord:
        row = self.con.execute(
            "SELECT image_id, sha256, path, width, height, label, thumbnail FROM images WHERE image_id = ?",
            [image_id],
        ).fetchone()
        if row is None:
            raise UserError(f"no image {image_id} in {self.path}")
        return ImageRecord(*row[:6], thumbnail=bytes(row[6]))
