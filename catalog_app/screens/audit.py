"""Audit: how many units of each layer match a query, per run side by side (``/audit?q=face``).

With two runs or more (two models, or one model dissected two ways), a column per run shows its
count per layer and its best matching units with their exemplar strips, so what "face" means in
each model is seen next to the other, not only counted.

The matching is the search's (keyword or meaning above the threshold, losing candidates only when
ticked), the same as the ``audit`` command's and the Search page's, so the bars here, the command's
table and the search's count agree for the same query and options.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from catalog_app.common import CatalogKey, catalog_key, open_catalog, unit_link
from catalog_app.text import markdown_text
from catalog_app.views import CARD_EXEMPLARS, card_picture, match_controls, region_style
from milan_core.applications.audit import layer_counts, matching_units
from milan_core.catalog import Catalog
from milan_core.catalog.browse import exemplar_rows
from milan_core.errors import UserError

MAX_LISTED = 200
#: Runs shown in columns side by side (more would be too narrow to see), and units shown per run.
MAX_SIDE_BY_SIDE = 4
SIDE_BY_SIDE_UNITS = 6
SEARCH_PAGE = "screens/search.py"


@st.cache_data(max_entries=64, show_spinner=False)
def cached_audit(
    _catalog: Catalog, key: CatalogKey, query: str, runs: tuple[str, ...], min_similarity: float, candidates: bool
):
    """(per-layer counts, matching units) or a UserError message when nothing matches."""
    try:
        units = matching_units(_catalog, query, runs, min_similarity=min_similarity, candidates=candidates)
    except UserError as error:
        return None, str(error)
    counts = layer_counts(_catalog, units, runs)
    return (counts, units), None


def side_by_side(catalog: Catalog, counts: pd.DataFrame, units: pd.DataFrame, runs: list[str], style: str) -> None:
    """A column per run: its matches per layer, then its best matching units with their exemplar strips."""
    st.subheader("Runs side by side")
    if len(runs) > MAX_SIDE_BY_SIDE:
        st.caption(f"the first {MAX_SIDE_BY_SIDE} of {len(runs)} runs; pick fewer under Runs to choose which")
    runs = runs[:MAX_SIDE_BY_SIDE]
    best = units[units.run_id.isin(runs)].groupby("run_id", sort=False).head(SIDE_BY_SIDE_UNITS)
    strips = dict(tuple(exemplar_rows(catalog, best.unit_id.tolist(), CARD_EXEMPLARS).groupby("unit_id")))
    models = catalog.runs().set_index("run_id").model
    key = catalog_key(catalog)
    for column, run_id in zip(st.columns(len(runs), border=True), runs):
        with column:
            st.markdown(f"**{markdown_text(run_id)}** · {markdown_text(models[run_id])}")
            layers = counts[counts.run_id == run_id].sort_values("layer_index")
            st.dataframe(layers[["layer", "matches", "units"]], hide_index=True, width="stretch")
            mine = best[best.run_id == run_id]
            if mine.empty:
                st.caption("no matching unit in this run")
            for row in mine.itertuples():
                unit_link(row.run_id, row.key, f"{row.key} — {row.description}")
                rows = strips.get(row.unit_id, pd.DataFrame())
                st.image(card_picture(key, int(row.unit_id), float(row.threshold), style, rows), width="stretch")


def main() -> None:
    st.title("Audit")
    catalog = open_catalog()
    if catalog is None:
        st.stop()
    all_runs = catalog.runs().run_id.tolist()
    query = st.text_input("Query", key="q", bind="query-params", placeholder="e.g. face, text, dog")
    runs = st.multiselect("Runs (none: all)", all_runs, key="runs", bind="query-params")
    matching = match_controls()
    min_similarity, candidates = matching["min_similarity"], matching["candidates"]
    if not query.strip():
        st.info("Type a query to count the units whose descriptions match it, layer by layer.")
        return
    result, message = cached_audit(
        catalog, catalog_key(catalog), query, tuple(runs or all_runs), min_similarity, candidates
    )
    if result is None:
        st.warning(markdown_text(message))
        return
    counts, units = result
    st.caption(f"{len(units)} matching units; threshold: keyword, or cosine similarity ≥ {min_similarity:.2f}")
    st.page_link(
        SEARCH_PAGE,
        label=f"Open these {len(units)} units in Search",
        icon=":material/search:",
        query_params={
            "q": query,
            "sim": str(min_similarity),
            **({"runs": runs} if runs else {}),
            **({"cand": "true"} if candidates else {}),
        },
    )
    measure = st.radio(
        "Bars show",
        ["matches", "share"],
        horizontal=True,
        key="measure",
        format_func={"matches": "number of units", "share": "share of the layer"}.get,
    )
    figure = px.bar(
        counts,
        x="layer",
        y=measure,
        color="run_id",
        barmode="group",
        hover_data=["matches", "units", "share"],
        labels={"run_id": "run", "share": "share of layer"},
        category_orders={"layer": counts.sort_values("layer_index").layer.drop_duplicates().tolist()},
    )
    st.plotly_chart(figure, width="stretch")
    shown_runs = list(runs or all_runs)
    if len(shown_runs) > 1:
        side_by_side(catalog, counts, units, shown_runs, region_style(st.sidebar))
    st.subheader("Matching units")
    for row in units.head(MAX_LISTED).itertuples():
        left, right = st.columns([1, 3])
        with left:
            unit_link(row.run_id, row.key, f"{row.run_id} · {row.key}")
        right.markdown(f"{markdown_text(row.description)} — *{markdown_text(row.reason)}*")
    if len(units) > MAX_LISTED:
        st.caption(f"showing the best {MAX_LISTED} of {len(units)}; the Search page pages through all of them")


main()
