"""What every page of the catalog browser shares: finding and opening the catalog, and cache keys.

How the app is put together (``streamlit run catalog_app/app.py``):

* ``app.py`` is the entrypoint. It builds the navigation with ``st.navigation`` and runs the chosen
  page, then closes every catalog the page opened, so the file is only held while a page is drawn
  and a writer (``dissect``, ``describe``) can always get at it between runs.
* Each page is a plain script in ``catalog_app/screens/`` (not ``pages/``: Streamlit runs a file
  there by itself when its URL is opened directly, bypassing ``app.py``, its navigation and its
  closing of the catalog). **To add a page, drop a ``.py`` file there**: ``app.py`` lists it after
  the built-in pages, titled from its file name (``audit.py`` -> "Audit", URL ``/audit``). A page starts with::

      from catalog_app.common import open_catalog

      catalog = open_catalog()
      if catalog is None:
          st.stop()

  and keeps its state in widgets bound to the URL (``key="q", bind="query-params"``), so every
  view is a link someone can share. Link to a unit with ``unit_link(run_id, key)``.
* ``open_catalog()`` draws the sidebar's catalog list (call it once per page run): the catalogs
  under ``MILAN_CATALOG_DIRS`` (default: the folder of ``MILAN_CATALOG``, else of
  ``data/catalog.duckdb``), the default one first; opens the chosen one read-only; and when it is
  missing, empty, or from a newer schema, says so in one sentence with the command to make one
  and returns None (never a traceback).
* Text from the catalog, the URL or a person goes through ``catalog_app.text.markdown_text``
  before any element that reads markdown (captions, info boxes, labels), or into ``st.text``.
* Cache with ``st.cache_data`` on ``catalog_key(catalog)`` (path and modification time), passing the
  open catalog itself as an argument whose name starts with ``_`` (not hashed).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

import streamlit as st

from catalog_app.text import markdown_text
from milan_core.catalog import MAKE_ONE, Catalog
from milan_core.catalog.search import meaning_ready
from milan_core.errors import UserError

DEFAULT_CATALOG = Path("data/catalog.duckdb")
CATALOG_ENV = "MILAN_CATALOG"
CATALOG_DIRS_ENV = "MILAN_CATALOG_DIRS"
PATH_KEY = "catalog_path"
FIELD_KEY = "catalog_field"
#: Most catalogs listed from the configured folders (a folder of thousands is a mistake, not a choice).
MAX_LISTED_CATALOGS = 500

#: Catalogs opened during the current script run, per session thread; ``close_catalogs`` ends them.
_opened = threading.local()
_warm_up_lock = threading.Lock()
_warm_up_started = False


class CatalogKey(NamedTuple):
    """What identifies a catalog's content for caching: its file and when it last changed."""

    path: str
    mtime_ns: int


def default_catalog_path() -> Path:
    """``MILAN_CATALOG`` if set, else ``data/catalog.duckdb`` (relative to where the app runs)."""
    return Path(os.environ.get(CATALOG_ENV) or DEFAULT_CATALOG)


def catalog_dirs() -> list[Path]:
    """The folders whose catalogs a visitor may open: ``MILAN_CATALOG_DIRS`` (separated like PATH),
    else the default catalog's folder. Set by whoever runs the server, never by a visitor."""
    raw = os.environ.get(CATALOG_DIRS_ENV, "")
    folders = [Path(part).expanduser() for part in raw.split(os.pathsep) if part.strip()]
    return [folder.resolve() for folder in folders or [default_catalog_path().parent]]


def available_catalogs() -> list[Path]:
    """Every ``*.duckdb`` file under the configured folders, the default catalog first when it is one.

    The sidebar offers only these, so a visitor can neither open an arbitrary file on the server
    nor learn whether a path exists.
    """
    found: dict[Path, None] = {}
    default = default_catalog_path().resolve()
    if default.is_file() and any(default.is_relative_to(folder) for folder in catalog_dirs()):
        found[default] = None
    for folder in catalog_dirs():
        for path in sorted(folder.rglob("*.duckdb")) if folder.is_dir() else ():
            if len(found) >= MAX_LISTED_CATALOGS:
                return list(found)
            if path.is_file():
                found[path.resolve()] = None
    return list(found)


def _remember_path() -> None:
    st.session_state[PATH_KEY] = st.session_state[FIELD_KEY]


def _catalog_label(path: str) -> str:
    """A listed catalog's name: its path inside the configured folder that holds it."""
    for folder in catalog_dirs():
        if Path(path).is_relative_to(folder):
            return f"{Path(path).relative_to(folder)} ({folder.name or folder})"
    return Path(path).name


def catalog_path() -> Path:
    """The catalog the person picked in the sidebar from the listed ones, else the default.

    The list is drawn by the page: a widget drawn by ``app.py`` itself loses its value when changed
    under ``st.navigation`` in this Streamlit. Its value is also kept under a session key of its
    own, so it survives switching pages. With nothing listed the default catalog is used, so its
    page can say how to make it.
    """
    listed = [str(path) for path in available_catalogs()]
    if not listed:
        return default_catalog_path()
    remembered = st.session_state.get(PATH_KEY)
    st.sidebar.selectbox(
        "Catalog",
        listed,
        index=listed.index(remembered) if remembered in listed else 0,
        key=FIELD_KEY,
        format_func=_catalog_label,
        on_change=_remember_path,
        help=f"The DuckDB catalogs made by `python -m milan_core dissect` in the folders ${CATALOG_DIRS_ENV} names.",
    )
    return Path(st.session_state.get(FIELD_KEY) or listed[0])


def open_catalog() -> Catalog | None:
    """The chosen catalog opened read-only, or None after telling the person how to make one."""
    path = catalog_path()
    try:
        catalog = Catalog(path)
    except UserError as error:
        st.info(markdown_text(f"{error}."))
        return None
    _remember(catalog)
    if catalog.runs().empty:
        st.info(markdown_text(f"The catalog {path} is empty; {MAKE_ONE.format(path=path)}."))
        return None
    return catalog


def _remember(catalog: Catalog) -> None:
    if not hasattr(_opened, "catalogs"):
        _opened.catalogs = []
    _opened.catalogs.append(catalog)


def close_catalogs() -> None:
    """Close every catalog opened in this script run (``app.py`` calls it when the page is drawn)."""
    for catalog in getattr(_opened, "catalogs", []):
        catalog.close()
    _opened.catalogs = []


def single_threaded_torch() -> None:
    """One intra-op thread for torch: the app runs it on one photo (live probe) or one query
    (MiniLM) at a time, where more threads only contend (Lite0 on one photo took 3.0 s with 2
    threads and 0.10 s with 1 on this 2-core machine at load 23)."""
    import torch

    torch.set_num_threads(1)


def _load_meaning() -> None:
    single_threaded_torch()
    meaning_ready()


def warm_up() -> None:
    """Start loading the sentence model (and torch under it) in the background, once per server
    process. Called once the browser has drawn a page, not before: the load took 5-20 s here and
    holds the GIL most of that time, so while it ran the server answered the page's own requests
    (its scripts, its pictures) seconds late, and the first page took 5-9 s to draw."""
    global _warm_up_started
    with _warm_up_lock:
        if not _warm_up_started:
            _warm_up_started = True
            threading.Thread(target=_load_meaning, name="milan-warm-up", daemon=True).start()


def catalog_key(catalog: Catalog) -> CatalogKey:
    """The cache key of an open catalog: a rewritten file gets a new key, so caches never go stale."""
    path = catalog.path.resolve()
    return CatalogKey(str(path), path.stat().st_mtime_ns)


def run_choice(runs: list[str], where: Any = st) -> str:
    """The run picked in a select box, starting from ``?run=`` (else the first run), and written back
    to the URL even when it is the first run, so that every link and shared address names its run."""
    asked = st.query_params.get("run")
    chosen = where.selectbox("Run", runs, index=runs.index(asked) if asked in runs else 0)
    if chosen is not None and asked != chosen:
        st.query_params["run"] = chosen
    return chosen


UNIT_PAGE = "screens/unit.py"
IMAGE_PAGE = "screens/image.py"


def unit_link(run_id: str, key: str, label: str | None = None, bold: bool = False) -> None:
    """A link to a unit's page (``/unit?run=...&unit=layer:unit``), keeping the run; the label is
    shown as text (``bold`` in bold)."""
    text = markdown_text(label or key)
    st.page_link(
        UNIT_PAGE,
        label=f"**{text}**" if bold else text,
        query_params={"run": run_id, "unit": key},
        icon=":material/open_in_new:",
    )


def image_query(run_id: str, image_id: int) -> dict[str, str]:
    """The query of a probe image's page: the run and the image, as every link to it writes them."""
    return {"run": run_id, "image": str(int(image_id))}


def image_href(run_id: str, image_id: int) -> str:
    """The address of a probe image's page relative to any page of the app (``image?run=...&image=ID``),
    for links written in markdown."""
    return "image?" + urlencode(image_query(run_id, image_id))


def image_links(run_id: str, exemplars: Iterable[tuple[int, int]]) -> None:
    """One line of links to the image pages of a card's exemplars, given as (rank, image id):
    one element however many exemplars (a page of 24 cards drew 7 elements a card for them, and
    the browser's drawing time grew with the page's elements). ``navigation.js`` opens them inside
    the app, as a page link does, and a click on the strip above follows the one under it."""
    st.markdown(" · ".join(f"[#{rank + 1}]({image_href(run_id, image_id)})" for rank, image_id in exemplars))


def image_link(run_id: str, image_id: int, label: str, where: Any = st) -> None:
    """A link to a probe image's page (``/image?run=...&image=ID``: every unit it excites). A click
    on the picture above it follows it too (``navigation.js``)."""
    where.page_link(
        IMAGE_PAGE,
        label=markdown_text(label),
        query_params=image_query(run_id, image_id),
        icon=":material/image_search:",
    )
