"""Runs: what each dissection was, its layers, where it read each image, and writing a whole run.

``write_run`` replaces a run in one transaction. When a rerun finds exactly the exemplars it had
(same units, same images at the same ranks), the unit ids are kept and so is everything derived
from them (descriptions, candidates, audits, ablations, edits); otherwise those go with the old
run, and ``RunWrite`` says what went, so the caller can tell the user how to get it back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from milan_core.catalog.base import CatalogBase
from milan_core.catalog.schema import DISSECTION_TABLES
from milan_core.errors import UserError

MAKE_ONE = "make one with: python -m milan_core dissect --out {path}"
RUN = "run_id = ?"


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

    ``units`` has the ``units`` table's columns but ``run_id`` and ``unit_id`` (given on insert);
    ``exemplars`` names its unit by (layer, unit) and its image by ``sha256``; ``images`` has the
    ``images`` columns but ``image_id``, plus ``path``: the file as this run read it (resolved).
    """

    run: RunRecord
    layers: pd.DataFrame
    units: pd.DataFrame
    images: pd.DataFrame
    exemplars: pd.DataFrame


@dataclass(frozen=True)
class RunWrite:
    """What writing a run did to the run it replaced: kept its derived rows, or dropped them."""

    kept: bool = False  # the run was there with the same exemplars: its derived rows stay
    dropped: dict[str, int] = field(default_factory=dict)  # table -> rows, derived tables only
    describers: tuple[str, ...] = ()  # whose descriptions were dropped


EXEMPLAR_KEY = ["layer", "unit", "rank", "sha256"]


class RunQueries(CatalogBase):
    """The ``runs``, ``layers`` and ``run_images`` tables, and writing or deleting a whole run."""

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

    def layers_of_runs(self, run_ids: list[str]) -> pd.DataFrame:
        """run_id, layer, layer_index, kind, units (its unit count) of every layer of the runs."""
        return self.query(
            "SELECT run_id, layer, layer_index, kind, n_units AS units FROM layers "
            "WHERE list_contains(?, run_id) ORDER BY run_id, layer_index",
            [list(run_ids)],
        )

    # -- writing --------------------------------------------------------------------------------

    def _forget_unused_images(self) -> None:
        self.con.execute("DELETE FROM images WHERE image_id NOT IN (SELECT image_id FROM run_images)")

    def _stored_exemplars(self, run_id: str) -> pd.DataFrame:
        return self.query(
            "SELECT u.layer, u.unit, e.rank, i.sha256, u.unit_id FROM units u "
            "JOIN exemplars e ON e.unit_id = u.unit_id JOIN images i ON i.image_id = e.image_id "
            "WHERE u.run_id = ? ORDER BY u.layer, u.unit, e.rank",
            [run_id],
        )

    def _derived_rows(self, run_id: str) -> tuple[dict[str, int], tuple[str, ...]]:
        """(table -> rows) of what a run owns beyond its dissection, and whose descriptions it has."""
        counts = {}
        for table, where in self.cascade("runs", RUN):
            if table not in DISSECTION_TABLES:
                n = int(self.scalar(f"SELECT count(*) FROM {table} WHERE {where}", [run_id]))
                if n:
                    counts[table] = counts.get(table, 0) + n
        describers = self.con.execute(
            "SELECT DISTINCT describer FROM descriptions WHERE unit_id IN "
            "(SELECT unit_id FROM units WHERE run_id = ?) ORDER BY describer",
            [run_id],
        ).fetchall()
        return counts, tuple(d for (d,) in describers)

    def _replace(self, tables: RunTables) -> tuple[RunWrite, dict[tuple[str, int], int]]:
        """Delete the run being replaced, keeping its derived rows (and unit ids) when the
        exemplars are the same; the unit ids to reuse, by (layer, unit)."""
        run_id = tables.run.run_id
        old = self._stored_exemplars(run_id)
        if old.empty and not self.scalar("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]):
            return RunWrite(), {}
        new = tables.exemplars[EXEMPLAR_KEY].sort_values(["layer", "unit", "rank"])
        same_units = set(zip(old.layer, old.unit)) == set(zip(tables.units.layer, tables.units.unit))
        same = same_units and not old.empty and list(old[EXEMPLAR_KEY].itertuples(index=False, name=None)) == list(
            new.itertuples(index=False, name=None)
        )
        if same:
            self.delete_cascade("runs", RUN, run_id, only=DISSECTION_TABLES)
            ids = {(layer, int(unit)): int(i) for layer, unit, i in zip(old.layer, old.unit, old.unit_id)}
            return RunWrite(kept=True), ids
        dropped, describers = self._derived_rows(run_id)
        self.delete_cascade("runs", RUN, run_id)
        return RunWrite(dropped=dropped, describers=describers), {}

    def write_run(self, tables: RunTables) -> RunWrite:
        """Write (or replace) one run in a single transaction; what happened to the one replaced."""
        run = tables.run
        with self.transaction():
            written, kept_ids = self._replace(tables)
            self.insert_row("runs", {
                "run_id": run.run_id, "model": run.model, "layers": run.layers, "probe_root": run.probe_root,
                "config": json.dumps(run.config), "code_version": run.code_version, "n_images": run.n_images,
                "n_skipped": run.n_skipped, "seconds": run.seconds, "timings": json.dumps(run.timings),
            }, stamped=["created_at"])
            self.insert_frame("layers", tables.layers.assign(run_id=run.run_id))
            first_id = int(self.scalar("SELECT coalesce(max(unit_id), 0) + 1 FROM units"))
            fresh = np.arange(first_id, first_id + len(tables.units))
            unit_ids = [kept_ids.get((layer, int(unit)), int(new)) for layer, unit, new in
                        zip(tables.units.layer, tables.units.unit, fresh)]
            units = tables.units.assign(run_id=run.run_id, unit_id=unit_ids)
            self.insert_frame("units", units)
            self._write_images(run.run_id, tables.images)
            self.con.register("new_units", units)
            self.con.register("new_exemplars", tables.exemplars)
            try:
                self.con.execute(
                    "INSERT INTO exemplars (unit_id, rank, image_id, activation, amap_min, amap_max, amap) "
                    "SELECT u.unit_id, e.rank, i.image_id, e.activation, e.amap_min, e.amap_max, e.amap "
                    "FROM new_exemplars e JOIN new_units u ON u.layer = e.layer AND u.unit = e.unit "
                    "JOIN images i ON i.sha256 = e.sha256"
                )
            finally:
                self.con.unregister("new_units")
                self.con.unregister("new_exemplars")
            self._forget_unused_images()
        return written

    def _write_images(self, run_id: str, images: pd.DataFrame) -> None:
        """New images once by content (ids continuing the table's), and this run's path of each."""
        self.con.register("new_images", images)
        try:
            self.con.execute(
                "INSERT INTO images (image_id, sha256, width, height, label, thumbnail) "
                "SELECT (SELECT coalesce(max(image_id), 0) FROM images) + row_number() OVER (ORDER BY n.path), "
                "n.sha256, n.width, n.height, n.label, n.thumbnail "
                "FROM new_images n WHERE n.sha256 NOT IN (SELECT sha256 FROM images)"
            )
            self.con.execute(
                "INSERT INTO run_images (run_id, image_id, path) "
                "SELECT ?, i.image_id, n.path FROM new_images n JOIN images i ON i.sha256 = n.sha256",
                [run_id],
            )
        finally:
            self.con.unregister("new_images")
