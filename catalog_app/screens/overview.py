"""One run at a glance (``/overview?run=RUN``): what kind of evidence each layer's units rest on, and
the descriptions each layer uses most — the shape of the model's vocabulary.
"""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from catalog_app.common import open_catalog, run_choice
from catalog_app.text import markdown_text, plotly_text
from milan_core.catalog.browse import evidence_by_layer, top_concepts
from milan_core.catalog.search import default_describer
from milan_core.config import EVIDENCE_TYPES

TOP_CONCEPTS = 10
SEARCH_PAGE = "screens/search.py"
EVIDENCE_ORDER = [*EVIDENCE_TYPES, "not described"]


def main() -> None:
    st.title("Run overview")
    catalog = open_catalog()
    if catalog is None:
        st.stop()
    runs = catalog.runs()
    run_id = run_choice(runs.run_id.tolist())
    run = catalog.run(run_id)
    describer = default_describer(catalog)
    evidence = evidence_by_layer(catalog, run_id, describer)
    st.caption(
        markdown_text(f"{run.model} · layers {', '.join(run.layers)} · described by {describer or 'nobody yet'}")
    )
    cells = st.columns(3)
    cells[0].metric("Probe images", run.n_images)
    cells[1].metric("Units", int(evidence.units.sum()))
    described = int(evidence[evidence.evidence_type != "not described"].units.sum())
    cells[2].metric("Described", f"{described / max(1, evidence.units.sum()):.0%}")
    figure = px.bar(
        evidence,
        x="layer",
        y="units",
        color="evidence_type",
        barmode="stack",
        category_orders={"evidence_type": EVIDENCE_ORDER, "layer": run.layers},
        title="Units per layer by evidence type (share of the layer)",
    )
    figure.update_layout(barnorm="percent", yaxis_title="% of units", height=360)
    st.plotly_chart(figure, width="stretch")
    concepts = top_concepts(catalog, run_id, describer, TOP_CONCEPTS)
    if concepts.empty:
        st.info(
            "No descriptions yet; add them with: python -m milan_core describe --catalog " + markdown_text(catalog.path)
        )
        return
    st.subheader("Most used descriptions per layer")
    st.caption("Click a bar, or a description below it, to search for the units it describes in that layer.")
    layers = list(dict.fromkeys(concepts.layer))
    for tab, (layer, rows) in zip(
        st.tabs([markdown_text(name) for name in layers]), concepts.groupby("layer", sort=False)
    ):
        with tab:
            concept_chart(run_id, layer, rows)


def concept_chart(run_id: str, layer: str, rows) -> None:
    """A layer's most used descriptions as bars; a bar (or its link) opens the matching search."""
    shown = rows.assign(label=rows.description.map(plotly_text))
    chart = px.bar(
        shown,
        x="units",
        y="label",
        orientation="h",
        height=40 + 28 * len(rows),
        custom_data=["description"],
        labels={"label": "description"},
    )
    chart.update_layout(yaxis={"categoryorder": "total ascending"}, margin=dict(l=10, r=10, t=10, b=10))
    event = st.plotly_chart(chart, width="stretch", key=f"concepts_{layer}", on_select="rerun", selection_mode="points")
    points = event.selection.points if event else []
    if points:
        st.switch_page(SEARCH_PAGE, query_params=search_params(run_id, layer, points[0]["customdata"][0]))
    for description in rows.description:
        st.page_link(
            SEARCH_PAGE,
            label=markdown_text(description),
            query_params=search_params(run_id, layer, description),
            icon=":material/search:",
        )


def search_params(run_id: str, layer: str, description: str) -> dict[str, str]:
    """The search page's URL parameters for one description in one layer of one run."""
    return {"q": description, "runs": run_id, "layer": layer}


main()
