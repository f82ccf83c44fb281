"""Search, filter, browse and export units (``/?q=face&layer=blocks.6&page=2``).

Every control is bound to a URL query parameter, so the address bar always holds the current view;
values that do not fit a control (an unknown layer, text where a number goes) are dropped by
Streamlit rather than breaking the page. Keyword matches come first, then the "related" ones
(meaning only), with the same rule and counts as the Audit page and the ``audit`` command. On a
fresh server the keyword matches are drawn at once and the meaning matches join as soon as the
sentence model has loaded in the background.
"""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

from catalog_app.common import CatalogKey, catalog_key, open_catalog, warm_up
from catalog_app.export import export_csv
from catalog_app.text import markdown_text
from catalog_app.views import basket, card_grid, match_controls, picked, region_style
from milan_core.catalog import Catalog
from milan_core.catalog.browse import layer_names
from milan_core.catalog.notes import Notes
from milan_core.catalog.search import default_describer, describers, meaning_loaded, search_units
from milan_core.config import EVIDENCE_TYPES

PAGE_SIZE = 24


@st.cache_data(max_entries=256, show_spinner=False)
def cached_search(
    _catalog: Catalog, key: CatalogKey, notes: tuple[int, ...], query: str, options: tuple[tuple[str, Any], ...]
):
    """One page of search results, cached on the catalog, its notes file's version (people's labels
    are searched too, and a new label must show at once), the query and every option."""
    return search_units(_catalog, query, **dict(options))


@st.cache_data(show_spinner=False)
def catalog_choices(_catalog: Catalog, key: CatalogKey) -> dict[str, list[str]]:
    """Runs, layers (in layer order) and describers present in the catalog, for the filter controls."""
    return {
        "runs": _catalog.runs().run_id.tolist(),
        "layers": layer_names(_catalog),
        "describers": describers(_catalog),
    }


def filter_controls(choices: dict[str, list[str]]) -> dict[str, Any]:
    """The sidebar's filters, as keyword arguments for ``search_units``."""
    bar = st.sidebar
    bar.header("Filters")
    options: dict[str, Any] = {
        "describer": bar.selectbox("Describer", choices["describers"], key="describer", bind="query-params")
        if len(choices["describers"]) > 1
        else None,
        "run_ids": tuple(bar.multiselect("Runs", choices["runs"], key="runs", bind="query-params")),
        "layers": tuple(bar.multiselect("Layers", choices["layers"], key="layer", bind="query-params")),
        "evidence_types": tuple(bar.multiselect("Evidence type", EVIDENCE_TYPES, key="evidence", bind="query-params")),
        "min_confidence": bar.slider("Min. confidence", 0.0, 1.0, 0.0, 0.05, key="conf", bind="query-params") or None,
        "min_score": bar.number_input("Min. PMI score", value=None, step=0.5, key="score", bind="query-params"),
        "min_iou": bar.slider("Min. segmentation IoU", 0.0, 1.0, 0.0, 0.01, key="iou", bind="query-params") or None,
        "min_act_max": bar.number_input(
            "Min. peak activation",
            value=None,
            step=0.5,
            key="act",
            bind="query-params",
            help="Units whose largest activation over the probe set reaches this value.",
        ),
        **match_controls(bar),
    }
    return options


def export_controls(catalog: Catalog, query: str, options: dict[str, Any], total: int) -> None:
    """Download the ticked units, or every unit the search and filters let through, as CSV."""
    chosen = sorted(picked())
    labels = {"selected": f"selected units ({len(chosen)})", "all": f"all filtered units ({total})"}
    scope = (
        st.segmented_control(
            "Export",
            list(labels),
            format_func=labels.get,
            default="selected",
            key="scope",
            required=True,
        )
        or "selected"
    )
    path, describer = catalog.path, options.get("describer")
    everything = scope == "all"
    st.caption(
        f"The CSV will hold the {labels[scope]}, in rank order, with each exemplar's activation "
        "and people's votes and labels."
    )

    def csv() -> bytes:  # runs on click, after this script run closed its catalog
        with Catalog(path) as own:
            ids = search_units(own, query, **{**options, "limit": None}).unit_id.tolist() if everything else chosen
            return export_csv(own, ids, describer)

    st.download_button(
        "Download CSV",
        csv,
        file_name="units.csv",
        mime="text/csv",
        icon=":material/download:",
        disabled=not (everything or chosen),
        key="download",
    )


def requested_page() -> int:
    """The page asked for by the pager, or by ``?page=`` on first load (the pager is drawn last)."""
    raw = st.session_state.get("page") or st.query_params.get("page", "1")
    try:
        return max(1, int(raw))
    except (TypeError, ValueError):
        return 1


def page_options(options: dict[str, Any], page: int) -> tuple[tuple[str, Any], ...]:
    """The search options of one page of results, hashable for the cache."""
    return tuple(sorted({**options, "limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE}.items()))


KEYWORDS_ONLY = " · keyword matches only for now: meaning matches join when the sentence model has loaded"
TICKED = "search_ticked"


@st.fragment(run_every=1.0)
def rerun_when_meaning_is_ready() -> None:
    """Start loading the sentence model once the browser has drawn the page, and redraw the page
    when it has loaded, so the meaning matches join. Its first call is in the page's own run and
    does nothing; the next ones are the browser's ticks, a second after it drew the page."""
    if not st.session_state.get(TICKED):
        st.session_state[TICKED] = True
        return
    warm_up()
    if meaning_loaded():
        st.rerun()


def main() -> None:
    st.title("Search units")
    catalog = open_catalog()
    if catalog is None:
        st.stop()
    key, notes = catalog_key(catalog), Notes(catalog.path).version()
    choices = catalog_choices(catalog, key)
    options = filter_controls(choices)
    style = region_style(st.sidebar)
    basket()
    query = st.text_input(
        "Search descriptions",
        key="q",
        bind="query-params",
        placeholder="e.g. face, stripes, blue sky",
        max_chars=10_000,
    )
    options["semantic"] = not query.strip() or meaning_loaded()
    page = requested_page()
    results = cached_search(catalog, key, notes, query, page_options(options, page))
    if results.empty and page > 1:  # a page past the end, e.g. after the filters narrowed the set
        page = 1
        results = cached_search(catalog, key, notes, query, page_options(options, page))
    total = int(results.total.iloc[0]) if len(results) else 0
    waiting = "" if options["semantic"] else KEYWORDS_ONLY  # said on a line that is there anyway: nothing moves
    if total == 0 and not choices["describers"]:
        st.info(
            "No unit has a description yet; add them with: python -m milan_core describe --catalog "
            + markdown_text(catalog.path)
        )
    elif total == 0:
        st.info("No unit matches; try another word or loosen the filters" + waiting + ".")
    else:
        first = (page - 1) * PAGE_SIZE
        st.caption(f"{total} matching units · showing {first + 1}–{first + len(results)}{waiting}")
        st.pagination(max(1, math.ceil(total / PAGE_SIZE)), key="page", bind="query-params")
        card_grid(catalog, results, options["describer"] or default_describer(catalog), style)
    export_controls(catalog, query, options, total)
    if waiting:  # last: the rerun without it then changes no element above it, and nothing moves
        rerun_when_meaning_is_ready()


main()
