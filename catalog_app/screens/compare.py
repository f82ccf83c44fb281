"""Compare the ticked units side by side (``/compare``): descriptions, candidates, exemplar strips and
histograms, one column per unit. Units are ticked on the search page's cards (the basket).
"""

from __future__ import annotations

import streamlit as st

from catalog_app.common import catalog_key, open_catalog, unit_link
from catalog_app.text import markdown_text
from catalog_app.views import PICKED, basket, card_picture, histogram, picked, region_style
from milan_core.catalog import Catalog
from milan_core.catalog.browse import description_of, exemplar_rows, top_candidates, unit_row
from milan_core.catalog.search import default_describer

PER_ROW = 3
EXEMPLARS = 5


def unit_column(catalog: Catalog, unit_id: int, describer: str | None, style: str) -> None:
    """One ticked unit: link, description, candidates, its first exemplars and its histogram."""
    unit = unit_row(catalog, unit_id)
    unit_link(unit.run_id, unit.key, f"{unit.run_id} · {unit.key}", bold=True)
    described = description_of(catalog, unit_id, describer)
    st.markdown(markdown_text(described.description) if described is not None else "_not described yet_")
    candidates = top_candidates(catalog, [unit_id], describer, 5)
    if not candidates.empty:
        st.caption("candidates: " + " · ".join(markdown_text(text) for text in candidates.text))
    rows = exemplar_rows(catalog, [unit_id], EXEMPLARS)
    st.image(card_picture(catalog_key(catalog), unit_id, float(unit.threshold), style, rows), width="stretch")
    st.plotly_chart(histogram(unit, float(unit.threshold)).update_layout(height=200), width="stretch",
                    key=f"compare_histogram_{unit_id}")


def main() -> None:
    st.title("Compare units")
    catalog = open_catalog()
    if catalog is None:
        st.stop()
    basket()
    chosen = sorted(picked())
    known = set(catalog.units().unit_id) if chosen else set()
    chosen = [unit_id for unit_id in chosen if unit_id in known]  # another catalog's ticks are dropped
    if not chosen:
        st.info("Tick units on the Search page (select) to compare them here side by side.")
        return
    style = region_style()
    if st.button("Empty the basket"):
        st.session_state[PICKED] = set()
        st.rerun()
    describer = default_describer(catalog)
    for start in range(0, len(chosen), PER_ROW):
        for column, unit_id in zip(st.columns(PER_ROW, border=True), chosen[start : start + PER_ROW]):
            with column:
                unit_column(catalog, unit_id, describer, style)


main()
