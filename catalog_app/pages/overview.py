"""One run at a glance (``/overview?run=RUN``): what kind of evidence each layer's units rest on, and
the descriptions each layer uses most — the shape of the model's vocabulary.
"""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from catalog_app.common import open_catalog
from milan_core.catalog import Catalog
from milan_core.catalog.search import default_describer

TOP_CONCEPTS = 10
EVIDENCE_ORDER = ["object", "scene", "colour", "texture", "position", "shape", "none", "not described"]


def evidence_by_layer(catalog: Catalog, run_id: str, describer: str | None):
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


def top_concepts(catalog: Catalog, run_id: str, describer: str | None):
    """Each layer's most used descriptions (units with no clear evidence left out)."""
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
        [describer, run_id, TOP_CONCEPTS],
    )


def main() -> None:
    st.title("Run overview")
    catalog = open_catalog()
    if catalog is None:
        st.stop()
    runs = catalog.runs()
    run_id = st.selectbox("Run", runs.run_id.tolist(), key="run", bind="query-params")
    run = catalog.run(run_id)
    describer = default_describer(catalog)
    evidence = evidence_by_layer(catalog, run_id, describer)
    st.caption(f"{run.model} · layers {', '.join(run.layers)} · described by {describer or 'nobody yet'}")
    cells = st.columns(3)
    cells[0].metric("Probe images", run.n_images)
    cells[1].metric("Units", int(evidence.units.sum()))
    described = int(evidence[evidence.evidence_type != "not described"].units.sum())
    cells[2].metric("Described", f"{described / max(1, evidence.units.sum()):.0%}")
    figure = px.bar(
        evidence, x="layer", y="units", color="evidence_type", barmode="stack",
        category_orders={"evidence_type": EVIDENCE_ORDER, "layer": run.layers},
        title="Units per layer by evidence type (share of the layer)",
    )
    figure.update_layout(barnorm="percent", yaxis_title="% of units", height=360)
    st.plotly_chart(figure, width="stretch")
    concepts = top_concepts(catalog, run_id, describer)
    if concepts.empty:
        st.info(f"No descriptions yet; add them with: python -m milan_core describe --catalog {catalog.path}")
        return
    st.subheader("Most used descriptions per layer")
    for tab, (layer, rows) in zip(st.tabs(list(dict.fromkeys(concepts.layer))), concepts.groupby("layer", sort=False)):
        chart = px.bar(rows, x="units", y="description", orientation="h", height=40 + 28 * len(rows))
        chart.update_layout(yaxis={"categoryorder": "total ascending"}, margin=dict(l=10, r=10, t=10, b=10))
        tab.plotly_chart(chart, width="stretch", key=f"concepts_{layer}")


main()
