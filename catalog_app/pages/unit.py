"""One unit in full (``/unit?run=RUN&unit=blocks.6:17``): exemplars, threshold, histogram, candidates,
evidence and the units whose descriptions mean the closest thing.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from catalog_app.common import catalog_key, open_catalog, unit_link
from catalog_app.views import exemplar_pictures
from milan_core.catalog import Catalog
from milan_core.catalog.search import default_describer, nearest_units
from milan_core.errors import UserError

LARGE = 224
PER_ROW = 5


def histogram(unit: Any, threshold: float) -> go.Figure:
    """The unit's activation histogram over the probe set, with the stored and the chosen threshold."""
    counts = np.asarray(unit.hist, dtype=float)
    edges = np.linspace(unit.act_min, unit.act_max, len(counts) + 1)
    figure = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color="#5b7fa6"))
    figure.add_vline(x=unit.threshold, line_dash="dot",
                     annotation_text=f"stored threshold ({unit.quantile:.3g} quantile)")
    if threshold != unit.threshold:
        figure.add_vline(x=threshold, line_color="#c77d00", annotation_text="shown", annotation_position="bottom right")
    figure.update_layout(
        height=280, margin=dict(l=10, r=10, t=30, b=10), yaxis_type="log", xaxis_title="activation",
        yaxis_title="positions",
    )
    return figure


def description_of(catalog: Catalog, unit_id: int, describer: str | None) -> pd.Series | None:
    frame = catalog.query("SELECT * FROM descriptions WHERE unit_id = ? AND describer = ?", [unit_id, describer])
    return None if frame.empty else frame.iloc[0]


def show_exemplars(catalog: Catalog, unit_id: int, threshold: float) -> None:
    pictures = exemplar_pictures(catalog, catalog_key(catalog), unit_id, threshold, None, LARGE)
    for start in range(0, len(pictures), PER_ROW):
        for column, (picture, caption) in zip(st.columns(PER_ROW), pictures[start : start + PER_ROW]):
            column.image(picture, caption=caption, width="stretch")


def show_headline(catalog: Catalog, described: pd.Series | None) -> None:
    """The chosen description and its PMI terms, or how to get descriptions."""
    if described is None:
        st.info("This unit has no description yet; add them with: python -m milan_core describe --catalog "
                f"{catalog.path}")
        return
    st.subheader(f"“{described.description}”")
    st.caption(
        f"{described.describer} · PMI score {described.score:.2f} · log p(d|E) {described.log_p_given_e:.2f} · "
        f"log p(d) {described.log_p:.2f} · confidence {described.confidence:.2f} · evidence: {described.evidence_type}"
    )


def show_candidates_and_evidence(catalog: Catalog, described: pd.Series) -> None:
    """Every candidate the selection rule weighed, and the evidence behind the winner."""
    candidates = catalog.query(
        "SELECT rank, text AS description, log_p_given_e AS \"log p(d|E)\", log_p AS \"log p(d)\", score "
        "FROM candidates WHERE unit_id = ? AND describer = ? ORDER BY rank",
        [int(described.unit_id), described.describer],
    )
    left, right = st.columns(2)
    left.markdown("**Candidates**")
    left.dataframe(candidates, hide_index=True, width="stretch")
    right.markdown("**Evidence**")
    right.json(json.loads(described.evidence), expanded=2)


def show_nearest(catalog: Catalog, unit_id: int, describer: str | None) -> None:
    nearest = nearest_units(catalog, unit_id, describer)
    if nearest.empty:
        return
    st.markdown("**Units with the nearest descriptions**")
    for row in nearest.itertuples():
        unit_link(row.run_id, row.key, f"{row.key} — {row.description} ({row.similarity:.2f})")


def main() -> None:
    catalog = open_catalog()
    if catalog is None:
        st.stop()
    runs = catalog.runs()
    left, right = st.columns([2, 1])
    run_id = left.selectbox("Run", runs.run_id.tolist(), key="run", bind="query-params")
    key = right.text_input("Unit (layer:unit)", key="unit", bind="query-params", placeholder="blocks.6:17")
    if not key:
        st.info("Type a unit as layer:unit, or open one from the search page.")
        st.stop()
    try:
        unit_id = catalog.unit_id(run_id, key)
    except UserError as error:
        st.info(f"{error}.")
        st.stop()
    unit = next(catalog.query("SELECT * FROM units WHERE unit_id = ?", [unit_id]).itertuples())
    model = runs.set_index("run_id").model[run_id]
    st.title(f"{key}")
    st.caption(f"{model} · run {run_id}")
    describer = default_describer(catalog)
    described = description_of(catalog, unit_id, describer)
    show_headline(catalog, described)
    low, high = float(unit.act_min), float(unit.act_max)
    threshold = st.slider(
        "Threshold (redraws the regions)", low, max(high, low + 1e-6), float(unit.threshold),
        key=f"threshold_{unit_id}", format="%.3f",
    )
    show_exemplars(catalog, unit_id, threshold)
    st.plotly_chart(histogram(unit, threshold), width="stretch")
    if described is not None:
        show_candidates_and_evidence(catalog, described)
        show_nearest(catalog, unit_id, describer)


main()
