"""Streamlit pieces the pages share: unit cards with their exemplar strips, cached per unit.

Card pictures are cached with ``st.cache_data`` on (catalog path, modification time, unit,
threshold): paging back and forth redraws nothing, and a catalog rewritten by ``describe`` gets
fresh pictures because its modification time changed.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from PIL import Image

from catalog_app.common import CatalogKey, catalog_key, unit_link
from catalog_app.render import draw_exemplars, exemplar_rows, highlighted_exemplars, strip
from milan_core.catalog import Catalog

CARD_EXEMPLARS = 3
CARDS_PER_ROW = 4
PICKED = "picked_units"


@st.cache_data(max_entries=2048, show_spinner=False)
def exemplar_pictures(
    _catalog: Catalog, key: CatalogKey, unit_id: int, threshold: float | None, k: int | None, size: int | None
) -> list[tuple[Image.Image, str]]:
    """The unit's highlighted exemplars with captions (cached; ``key`` stands for the catalog)."""
    return highlighted_exemplars(_catalog, unit_id, threshold, k, size)


@st.cache_data(max_entries=2048, show_spinner=False)
def card_picture(key: CatalogKey, unit_id: int, threshold: float, _rows: pd.DataFrame) -> Image.Image:
    """The card's strip of the unit's first exemplars at thumbnail size, cached per (catalog, unit,
    threshold); ``_rows`` are the unit's exemplar rows, fetched for the whole page in one query."""
    return strip([picture for picture, _ in draw_exemplars(_rows, threshold)])


def picked() -> set[int]:
    """The units ticked for export in this session."""
    return st.session_state.setdefault(PICKED, set())


def _toggle(unit_id: int, widget_key: str) -> None:
    chosen = picked()
    if st.session_state[widget_key]:
        chosen.add(unit_id)
    else:
        chosen.discard(unit_id)


def unit_card(catalog: Catalog, row: pd.Series, exemplars: pd.DataFrame) -> None:
    """One unit: its id (a link to its page), description, scores, why it matched, and its exemplars."""
    with st.container(border=True):
        unit_link(row.run_id, row.key, f"**{row.key}**")
        description = row.description if isinstance(row.description, str) else "not described yet"
        st.markdown(f"{description}")
        if pd.notna(row.score):
            st.caption(
                f"PMI {row.score:.2f} · confidence {row.confidence:.2f} · {row.evidence_type}"
                + (f" · IoU {row.best_iou:.2f}" if pd.notna(row.best_iou) else "")
            )
        if row.reason != "all units (no query)":
            st.caption(f"why: {row.reason}")
        picture = card_picture(catalog_key(catalog), int(row.unit_id), float(row.threshold), exemplars)
        st.image(picture, width="stretch")
        widget_key = f"pick_{row.unit_id}"
        st.checkbox(
            "select for export", value=int(row.unit_id) in picked(), key=widget_key,
            on_change=_toggle, args=(int(row.unit_id), widget_key),
        )


def card_grid(catalog: Catalog, frame: pd.DataFrame) -> None:
    """A page of unit cards, CARDS_PER_ROW to a row."""
    exemplars = dict(tuple(exemplar_rows(catalog, frame.unit_id.tolist(), CARD_EXEMPLARS).groupby("unit_id")))
    empty = pd.DataFrame()
    for start in range(0, len(frame), CARDS_PER_ROW):
        columns = st.columns(CARDS_PER_ROW)
        for column, (_, row) in zip(columns, frame.iloc[start : start + CARDS_PER_ROW].iterrows()):
            with column:
                unit_card(catalog, row, exemplars.get(row.unit_id, empty))
