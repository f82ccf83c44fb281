"""Reading a run for describers: every map decoded as the catalog decodes it, units in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from milan_core.catalog import Catalog
from milan_core.describe.store import load_run_view


def test_run_view_has_every_unit_and_the_catalogs_own_maps(small_catalog: Path) -> None:
    with Catalog(small_catalog) as catalog:
        run = load_run_view(catalog, None)
        n_units = int(catalog.query("SELECT count(*) AS n FROM units WHERE run_id = ?", [run.run_id]).n[0])
        assert len(run.units) == n_units == 40 + 320 + 1000
        layers = [u.layer for u in run.units]
        assert layers == sorted(layers, key=["blocks.2", "blocks.6", "classifier"].index)
        for unit in (run.units[0], run.units[39], run.units[40], run.units[-1]):  # each map shape
            stored = catalog.exemplars(unit.unit_id)
            assert [e.rank for e in unit.exemplars] == stored["rank"].tolist()
            assert [e.path for e in unit.exemplars] == stored.path.tolist()
            for exemplar, expected in zip(unit.exemplars, stored["map"]):
                assert exemplar.map.shape == expected.shape
                np.testing.assert_allclose(exemplar.map, expected, rtol=1e-6)
            assert unit.threshold == float(stored.threshold.iloc[0])
    assert {u.exemplars[0].map.shape for u in run.units} == {(28, 28), (7, 7), (1, 1)}
