"""One unit in full (``/unit?run=RUN&unit=blocks.6:17``): exemplars, threshold, histogram, candidates,
evidence, people's votes and labels, and the units whose descriptions mean the closest thing.

Votes and labels are written to the notes file beside the catalog (``milan_core.catalog.notes``),
never to the catalog, which the app only reads. Each browser session votes under an id of its
own, so two tabs are two voters and a person's latest vote is the one that counts.
"""

from __future__ import annotations

import json
import uuid

import pandas as pd
import streamlit as st

from catalog_app.common import catalog_key, image_link, open_catalog, run_choice, unit_link
from catalog_app.render import LEGEND
from catalog_app.text import markdown_text
from catalog_app.views import basket, class_line, exemplar_pictures, histogram, region_style
from milan_core.catalog import Catalog
from milan_core.catalog.browse import candidates_of, description_of, exemplar_rows, neighbour_keys, unit_row
from milan_core.catalog.notes import Notes
from milan_core.catalog.search import default_describer, nearest_units
from milan_core.errors import UserError

LARGE = 224
PER_ROW = 5
AUTHOR = "notes_author"


def show_exemplars(catalog: Catalog, run_id: str, unit_id: int, threshold: float, style: str) -> None:
    """Every exemplar large, each a link to its image's page (all the units it excites), drawn a
    row at a time (the first row shows while the next is drawn)."""
    rows = exemplar_rows(catalog, [unit_id])
    key = catalog_key(catalog)
    st.caption(f"Regions: {LEGEND[style]}. Hover a picture for its full-screen button.")
    for start in range(0, len(rows), PER_ROW):
        shown = rows.iloc[start : start + PER_ROW]
        pictures = exemplar_pictures(key, unit_id, threshold, LARGE, style, start, shown)
        for column, (picture, caption), image_id in zip(st.columns(PER_ROW), pictures, shown.image_id):
            column.image(picture, caption=markdown_text(caption), width="stretch")
            image_link(run_id, int(image_id), "units of this image", column)


def show_headline(catalog: Catalog, described: pd.Series | None) -> None:
    """The chosen description and its PMI terms, or how to get descriptions."""
    if described is None:
        st.info(
            "This unit has no description yet; add them with: python -m milan_core describe --catalog "
            + markdown_text(catalog.path)
        )
        return
    st.subheader(f"“{markdown_text(described.description)}”")
    significance = described.get("significance")
    st.caption(
        markdown_text(
            f"{described.describer} · PMI score {described.score:.2f} · log p(d|E) {described.log_p_given_e:.2f} · "
            f"log p(d) {described.log_p:.2f} · confidence {described.confidence:.2f} · "
            f"evidence: {described.evidence_type}"
            + (f" · significance {significance:.2g}" if significance is not None and pd.notna(significance) else "")
        )
    )


def show_candidates_and_evidence(catalog: Catalog, described: pd.Series) -> None:
    """Every candidate the selection rule weighed, and the evidence behind the winner."""
    candidates = candidates_of(catalog, int(described.unit_id), described.describer)
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


def author() -> str:
    """This browser session's voter id (two tabs are two voters; a login would replace it)."""
    return st.session_state.setdefault(AUTHOR, uuid.uuid4().hex[:12])


def show_notes(catalog: Catalog, run_id: str, key: str, described: pd.Series | None) -> None:
    """Agree/disagree with the description, a label of one's own, and what everybody said so far."""
    notes = Notes(catalog.path)
    st.markdown("**Your view**")
    if described is not None:
        mine = notes.author_vote(run_id, key, described.description, author())
        counts = notes.vote_counts()
        counts = counts[
            (counts.run_id == run_id) & (counts.unit_key == key) & (counts.description == described.description)
        ]
        agree, disagree = (int(counts.agree.iloc[0]), int(counts.disagree.iloc[0])) if len(counts) else (0, 0)
        left, middle, right = st.columns([1, 1, 3])
        for column, vote, word in ((left, 1, "Agree"), (middle, -1, "Disagree")):
            if column.button(word, key=f"vote_{vote}", type="primary" if mine == vote else "secondary"):
                notes.vote(run_id, key, described.describer, described.description, vote, author())
                st.rerun()
        right.caption(f"agree {agree} · disagree {disagree}" + {1: " · you agree", -1: " · you disagree"}.get(mine, ""))
    with st.form("label_form", clear_on_submit=True, border=False):
        label = st.text_input("Your label for this unit", max_chars=200, placeholder="e.g. helmet, knee pad")
        if st.form_submit_button("Save label") and label.strip():
            notes.add_label(run_id, key, label, author())
    labels = notes.labels(run_id, key)
    if not labels.empty:
        st.caption("Labels: " + " · ".join(markdown_text(text) for text in labels.label))


def _open_unit(key: str) -> None:
    st.session_state["unit"] = key


def show_neighbours(catalog: Catalog, unit_id: int) -> None:
    """Buttons for the previous and next unit of the layer (keys k and j). Buttons, not links: a
    page link to the page it is on does not redraw it in this Streamlit (seen in Chromium)."""
    before, after = neighbour_keys(catalog, unit_id)
    left, right = st.columns(2)
    if before:
        left.button(f"← previous: {markdown_text(before)}", key="previous_unit", on_click=_open_unit, args=(before,))
    if after:
        right.button(f"next: {markdown_text(after)} →", key="next_unit", on_click=_open_unit, args=(after,))


def main() -> None:
    catalog = open_catalog()
    if catalog is None:
        st.stop()
    runs = catalog.runs()
    left, right = st.columns([2, 1])
    run_id = run_choice(runs.run_id.tolist(), left)
    key = right.text_input("Unit (layer:unit)", key="unit", bind="query-params", placeholder="blocks.6:17")
    if not key:
        st.info("Type a unit as layer:unit, or open one from the search page.")
        st.stop()
    try:
        unit_id = catalog.unit_id(run_id, key)
    except UserError as error:
        st.info(markdown_text(f"{error}."))
        st.stop()
    unit = unit_row(catalog, unit_id)
    model = runs.set_index("run_id").model[run_id]
    basket()
    show_neighbours(catalog, unit_id)
    st.title(markdown_text(key))
    st.caption(markdown_text(f"{model} · run {run_id}"))
    describer = default_describer(catalog)
    described = description_of(catalog, unit_id, describer)
    show_headline(catalog, described)
    line = class_line(
        pd.Series({"unit": unit.unit, "description": None if described is None else described.description}), unit
    )
    if line:
        st.caption(line)
    low, high = float(unit.act_min), float(unit.act_max)
    threshold = st.slider(
        "Threshold (redraws the regions)",
        low,
        max(high, low + 1e-6),
        float(unit.threshold),
        key=f"threshold_{unit_id}",
        format="%.3f",
    )
    style = region_style()
    show_exemplars(catalog, run_id, unit_id, threshold, style)
    st.plotly_chart(histogram(unit, threshold), width="stretch")
    show_notes(catalog, run_id, key, described)
    if described is not None:
        show_candidates_and_evidence(catalog, described)
        show_nearest(catalog, unit_id, describer)


main()
