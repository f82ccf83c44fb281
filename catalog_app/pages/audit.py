"""Audit: how many units of each layer match a query, per run side by side (``/audit?q=face``).

The matching is the search's (keyword or meaning above the threshold), the same as the ``audit``
command's, so the bars here and the command's table agree.
"""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from catalog_app.common import CatalogKey, catalog_key, open_catalog, unit_link
from milan_core.applications.audit import layer_counts, matching_units
from milan_core.catalog import Catalog
from milan_core.catalog.search import DEFAULT_MIN_SIMILARITY
from milan_core.errors import UserError

MAX_LISTED = 200


@st.cache_data(max_entries=64, show_spinner=False)
def cached_audit(_catalog: Catalog, key: CatalogKey, query: str, runs: tuple[str, ...], min_similarity: float):
    """(per-layer counts, matching units) or a UserError message when nothing matches."""
    try:
        units = matching_units(_catalog, query, runs, min_similarity=min_similarity)
    except UserError as error:
        return None, str(error)
    counts = layer_counts(_catalog, units, runs)
    return (counts, units), None


def main() -> None:
    st.title("Audit")
    catalog = open_catalog()
    if catalog is None:
        st.stop()
    all_runs = catalog.runs().run_id.tolist()
    query = st.text_input("Query", key="q", bind="query-params", placeholder="e.g. face, text, dog")
    runs = st.multiselect("Runs (none: all)", all_runs, key="runs", bind="query-params")
    min_similarity = st.slider(
        "Semantic match threshold", 0.0, 1.0, DEFAULT_MIN_SIMILARITY, 0.05, key="sim", bind="query-params",
        help="A unit matches when its description contains a query word, "
        "or its description's MiniLM cosine similarity to the query reaches this value.",
    )
    if not query.strip():
        st.info("Type a query to count the units whose descriptions match it, layer by layer.")
        return
    result, message = cached_audit(catalog, catalog_key(catalog), query, tuple(runs or all_runs), min_similarity)
    if result is None:
        st.warning(message)
        return
    counts, units = result
    st.caption(f"{len(units)} matching units; threshold: keyword, or cosine similarity ≥ {min_similarity:.2f}")
    measure = st.radio("Bars show", ["matches", "share"], horizontal=True, key="measure",
                       format_func={"matches": "number of units", "share": "share of the layer"}.get)
    figure = px.bar(
        counts, x="layer", y=measure, color="run_id", barmode="group",
        hover_data=["matches", "units", "share"], labels={"run_id": "run", "share": "share of layer"},
        category_orders={"layer": counts.sort_values("layer_index").layer.drop_duplicates().tolist()},
    )
    st.plotly_chart(figure, width="stretch")
    st.subheader("Matching units")
    for row in units.head(MAX_LISTED).itertuples():
        left, right = st.columns([1, 3])
        with left:
            unit_link(row.run_id, row.key, f"{row.run_id} · {row.key}")
        right.write(f"{row.description} — *{row.reason}*")
    if len(units) > MAX_LISTED:
        st.caption(f"showing the best {MAX_LISTED} of {len(units)}; the Search page pages through all of them")


main()
