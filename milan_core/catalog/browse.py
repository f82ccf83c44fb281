"""The queries the catalog browser's pages need (``catalog_app/``), so the pages hold no SQL.

Each function answers one question a page asks — a page of cards' exemplars and candidates in one
query each (not one per card), a unit's neighbours in its layer, the units whose top-k holds an
image, the rows of a CSV export — with parameterised SQL and named columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from milan_core.catalog.connection import Catalog

#: Rows of the export besides its exemplar columns (see ``export_rows``).
EXPORT_UNIT_COLUMNS = (
    "run_id",
    "model",
    "layer",
    "unit",
    "key",
    "describer",
    "description",
    "score",
    "log_p_given_e",
    "log_p",
    "confidence",
    "significance",
    "evidence_type",
    "threshold",
    "act_mean",
    "act_max",
)


def _ids(unit_ids: Sequence[int]) -> list[int]:
    return [int(i) for i in unit_ids]


def layer_names(catalog: Catalog) -> list[str]:
    """Every layer name in the catalog, in layer order (for the search's filter)."""
    return catalog.query("SELECT layer FROM layers GROUP BY layer ORDER BY min(layer_index), layer").layer.tolist()


def exemplar_rows(catalog: Catalog, unit_ids: Sequence[int], k: int | None = None) -> pd.DataFrame:
    """The first ``k`` exemplars (all with None) of several units in one query: stored map, threshold,
    image id, path and thumbnail, in unit then rank order (one query for a page of cards)."""
    return catalog.query(
        "SELECT e.unit_id, e.rank, e.image_id, e.activation, e.amap_min, e.amap_max, e.amap, u.threshold, "
        "l.map_height, l.map_width, p.path, i.thumbnail FROM exemplars e "
        "JOIN units u ON u.unit_id = e.unit_id JOIN layers l ON l.run_id = u.run_id AND l.layer = u.layer "
        "JOIN images i ON i.image_id = e.image_id "
        "JOIN run_images p ON p.run_id = u.run_id AND p.image_id = e.image_id "
        "WHERE e.unit_id IN (SELECT unnest(?::BIGINT[])) AND (? IS NULL OR e.rank < ?) ORDER BY e.unit_id, e.rank",
        [_ids(unit_ids), k, k],
    )


def top_candidates(catalog: Catalog, unit_ids: Sequence[int], describer: str | None, n: int = 3) -> pd.DataFrame:
    """The ``n`` best-ranked candidates of each unit (winner included): unit_id, rank, text, score."""
    return catalog.query(
        "SELECT unit_id, rank, text, score FROM candidates "
        "WHERE unit_id IN (SELECT unnest(?::BIGINT[])) AND describer = ? AND rank < ? ORDER BY unit_id, rank",
        [_ids(unit_ids), describer, n],
    )


def card_details(catalog: Catalog, unit_ids: Sequence[int], describer: str | None) -> pd.DataFrame:
    """What a card shows beyond the search's columns: the layer's kind and width (a logit unit is a
    'flat' layer's), and how likely the description's evidence is by chance (its significance)."""
    return catalog.query(
        "SELECT u.unit_id, l.kind, l.n_units, l.map_height, l.map_width, d.significance "
        "FROM units u JOIN layers l ON l.run_id = u.run_id AND l.layer = u.layer "
        "LEFT JOIN descriptions d ON d.unit_id = u.unit_id AND d.describer = ? "
        "WHERE u.unit_id IN (SELECT unnest(?::BIGINT[]))",
        [describer, _ids(unit_ids)],
    )


def unit_row(catalog: Catalog, unit_id: int) -> Any:
    """One unit's statistics with its layer's kind, width and map size, as a named tuple (its
    ``quantile`` column would be a method's name on a Series)."""
    frame = catalog.query(
        "SELECT u.*, u.layer || ':' || u.unit AS key, l.kind, l.n_units, l.map_height, l.map_width "
        "FROM units u JOIN layers l ON l.run_id = u.run_id AND l.layer = u.layer WHERE u.unit_id = ?",
        [int(unit_id)],
    )
    return next(frame.itertuples(index=False))


def description_of(catalog: Catalog, unit_id: int, describer: str | None) -> pd.Series | None:
    """The unit's description by ``describer`` (every stored column), or None."""
    frame = catalog.query("SELECT * FROM descriptions WHERE unit_id = ? AND describer = ?", [int(unit_id), describer])
    return None if frame.empty else frame.iloc[0]


def image_path(catalog: Catalog, run_id: str, image_id: int) -> str | None:
    """Where the run read the image (its resolved path), or None if the run did not use it."""
    row = catalog.con.execute(
        "SELECT path FROM run_images WHERE run_id = ? AND image_id = ?", [run_id, int(image_id)]
    ).fetchone()
    return None if row is None else row[0]


def descriptions_of(catalog: Catalog, unit_ids: Sequence[int], describer: str | None) -> pd.DataFrame:
    """unit_id, description, confidence of several units (units without one are left out)."""
    return catalog.query(
        "SELECT unit_id, description, confidence FROM descriptions "
        "WHERE unit_id IN (SELECT unnest(?::BIGINT[])) AND describer = ?",
        [_ids(unit_ids), describer],
    )


def candidates_of(catalog: Catalog, unit_id: int, describer: str) -> pd.DataFrame:
    """Every candidate the selection rule weighed for the unit, best first."""
    return catalog.query(
        'SELECT rank, text AS description, log_p_given_e AS "log p(d|E)", log_p AS "log p(d)", score, agreement '
        "FROM candidates WHERE unit_id = ? AND describer = ? ORDER BY rank",
        [int(unit_id), describer],
    )


def neighbour_keys(catalog: Catalog, unit_id: int) -> tuple[str | None, str | None]:
    """The previous and next unit of the same run and layer (``layer:unit``), None at the ends."""
    row = catalog.con.execute(
        """
        WITH me AS (SELECT run_id, layer, unit FROM units WHERE unit_id = ?),
        layer_units AS (SELECT u.unit FROM units u, me WHERE u.run_id = me.run_id AND u.layer = me.layer)
        SELECT (SELECT max(unit) FROM layer_units WHERE unit < (SELECT unit FROM me)),
               (SELECT min(unit) FROM layer_units WHERE unit > (SELECT unit FROM me)),
               (SELECT layer FROM me)
        """,
        [int(unit_id)],
    ).fetchone()
    before, after, layer = row
    return (None if before is None else f"{layer}:{before}", None if after is None else f"{layer}:{after}")


def image_units(catalog: Catalog, image_id: int, run_id: str | None, describer: str | None) -> pd.DataFrame:
    """Every unit (of ``run_id``, else of every run) whose top-k holds the image, with the exemplar's
    rank, activation and stored map, in layer then rank order: what the image page draws."""
    return catalog.query(
        """
        SELECT u.unit_id, u.run_id, u.layer, l.layer_index, u.unit, u.layer || ':' || u.unit AS key, e.rank,
               e.activation, e.amap_min, e.amap_max, e.amap, u.threshold, l.map_height, l.map_width,
               d.description, d.confidence
        FROM exemplars e JOIN units u ON u.unit_id = e.unit_id
        JOIN layers l ON l.run_id = u.run_id AND l.layer = u.layer
        LEFT JOIN descriptions d ON d.unit_id = u.unit_id AND d.describer = ?
        WHERE e.image_id = ? AND (? IS NULL OR u.run_id = ?)
        ORDER BY u.run_id, l.layer_index, e.rank, e.activation DESC, u.unit
        """,
        [describer, int(image_id), run_id, run_id],
    )


def evidence_by_layer(catalog: Catalog, run_id: str, describer: str | None) -> pd.DataFrame:
    """Units per layer and evidence type (``not described`` for units without a description)."""
    return catalog.query(
        """
        SELECT u.layer, any_value(l.layer_index) AS layer_index,
               coalesce(d.evidence_type, 'not described') AS evidence_type, count(*) AS units
        FROM units u JOIN layers l ON l.run_id = u.run_id AND l.layer = u.layer
        LEFT JOIN descriptions d ON d.unit_id = u.unit_id AND d.describer = ?
        WHERE u.run_id = ? GROUP BY ALL ORDER BY layer_index
        """,
        [describer, run_id],
    )


def top_concepts(catalog: Catalog, run_id: str, describer: str | None, per_layer: int) -> pd.DataFrame:
    """Each layer's ``per_layer`` most used descriptions (units with no clear evidence left out)."""
    return catalog.query(
        """
        SELECT u.layer, any_value(l.layer_index) AS layer_index, d.description, count(*) AS units
        FROM units u JOIN layers l ON l.run_id = u.run_id AND l.layer = u.layer
        JOIN descriptions d ON d.unit_id = u.unit_id AND d.describer = ?
        WHERE u.run_id = ? AND d.evidence_type <> 'none'
        GROUP BY u.layer, d.description
        QUALIFY row_number() OVER (PARTITION BY u.layer ORDER BY count(*) DESC, d.description) <= ?
        ORDER BY layer_index, units DESC
        """,
        [describer, run_id, per_layer],
    )


def has_ablations(catalog: Catalog) -> bool:
    """Whether the catalog holds any ablation study (older catalogs have no such table)."""
    if not catalog.query("SELECT 1 FROM information_schema.tables WHERE table_name = 'ablations'").empty:
        return not catalog.query("SELECT 1 FROM ablations LIMIT 1").empty
    return False


def export_rows(catalog: Catalog, unit_ids: Sequence[int], describer: str | None) -> pd.DataFrame:
    """One row per unit, in the order of ``unit_ids`` (a search's rank order), with a ``rank``
    (1-based position in that order) and, in exemplar rank order joined by ``;``, the exemplars'
    full image paths and activations."""
    order = pd.DataFrame({"unit_id": _ids(unit_ids), "rank": range(1, len(unit_ids) + 1)})
    catalog.con.register("export_order", order)
    try:
        return catalog.query(
            f"""
            SELECT o.rank, {", ".join("x." + c for c in EXPORT_UNIT_COLUMNS)}, x.unit_id,
                   x.exemplar_paths, x.exemplar_activations
            FROM export_order o JOIN (
                SELECT u.unit_id, u.run_id, r.model, u.layer, u.unit, u.layer || ':' || u.unit AS key, d.describer,
                       d.description, d.score, d.log_p_given_e, d.log_p, d.confidence, d.significance,
                       d.evidence_type, u.threshold, u.act_mean, u.act_max,
                       (SELECT string_agg(p.path, ';' ORDER BY e.rank) FROM exemplars e JOIN run_images p
                          ON p.run_id = u.run_id AND p.image_id = e.image_id WHERE e.unit_id = u.unit_id)
                           AS exemplar_paths,
                       (SELECT string_agg(printf('%.4f', e.activation), ';' ORDER BY e.rank)
                          FROM exemplars e WHERE e.unit_id = u.unit_id) AS exemplar_activations
                FROM units u JOIN runs r USING (run_id)
                LEFT JOIN descriptions d ON d.unit_id = u.unit_id AND d.describer = ?
                WHERE u.unit_id IN (SELECT unit_id FROM export_order)
            ) x ON x.unit_id = o.unit_id
            ORDER BY o.rank
            """,
            [describer],
        )
    finally:
        catalog.con.unregister("export_order")
