"""What every page of the catalog browser shares: finding and opening the catalog, and cache keys.

How the app is put together (``streamlit run catalog_app/app.py``):

* ``app.py`` is the entrypoint. It builds the navigation with ``st.navigation`` and runs the chosen
  page, then closes every catalog the page opened, so the file is only held while a page is drawn
  and a writer (``dissect``, ``describe``) can always get at it between runs.
* Each page is a plain script in ``catalog_app/pages/``. **To add a page, drop a ``.py`` file
  there**: ``app.py`` lists it after the built-in pages, titled from its file name
  (``audit.py`` -> "Audit", URL ``/audit``). A page starts with::

      from catalog_app.common import open_catalog

      catalog = open_catalog()
      if catalog is None:
          st.stop()

  and keeps its state in widgets bound to the URL (``key="q", bind="query-params"``), so every
  view is a link someone can share. Link to a unit with ``unit_link(run_id, key)``.
* ``open_catalog()`` draws the sidebar's catalog field (call it once per page run) and takes the
  path from it, else ``MILAN_CATALOG``, else ``data/catalog.duckdb``; opens it read-only; and when it
  is missing, empty, or from a newer schema, says so in one sentence with the command to make one and
  returns None (never a traceback).
* Cache with ``st.cache_data`` on ``catalog_key(catalog)`` (path and modification time), passing the
  open catalog itself as an argument whose name starts with ``_`` (not hashed).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import NamedTuple

import streamlit as st

from milan_core.catalog import MAKE_ONE, Catalog
from milan_core.errors import UserError

DEFAULT_CATALOG = Path("data/catalog.duckdb")
CATALOG_ENV = "MILAN_CATALOG"
PATH_KEY = "catalog_path"
FIELD_KEY = "catalog_field"

#: Catalogs opened during the current script run, per session thread; ``close_catalogs`` ends them.
_opened = threading.local()


class CatalogKey(NamedTuple):
    """What identifies a catalog's content for caching: its file and when it last changed."""

    path: str
    mtime_ns: int


def default_catalog_path() -> Path:
    """``MILAN_CATALOG`` if set, else ``data/catalog.duckdb`` (relative to where the app runs)."""
    return Path(os.environ.get(CATALOG_ENV) or DEFAULT_CATALOG)


def _remember_path() -> None:
    st.session_state[PATH_KEY] = st.session_state[FIELD_KEY]


def catalog_path() -> Path:
    """The catalog the person asked for: the sidebar field, else the environment, else the default.

    The field is drawn by the page: a widget drawn by ``app.py`` itself loses its value when changed
    under ``st.navigation`` in this Streamlit. Its value is also kept under a session key of its
    own, so it survives switching pages.
    """
    chosen = str(st.session_state.get(PATH_KEY) or default_catalog_path())
    st.sidebar.text_input(
        "Catalog file", value=chosen, key=FIELD_KEY, on_change=_remember_path,
        help=f"A DuckDB catalog made by `python -m milan_core dissect`; default from ${CATALOG_ENV}.",
    )
    chosen = str(st.session_state.get(FIELD_KEY) or "").strip()
    return Path(chosen).expanduser() if chosen else default_catalog_path()


def open_catalog() -> Catalog | None:
    """The chosen catalog opened read-only, or None after telling the person how to make one."""
    path = catalog_path()
    try:
        catalog = Catalog(path)
    except UserError as error:
        st.info(f"{error}.")
        return None
    _remember(catalog)
    has_runs = catalog.con.execute("SELECT count(*) FROM runs").fetchone()[0]
    if not has_runs:
        st.info(f"The catalog {path} is empty; {MAKE_ONE.format(path=path)}.")
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


def catalog_key(catalog: Catalog) -> CatalogKey:
    """The cache key of an open catalog: a rewritten file gets a new key, so caches never go stale."""
    path = catalog.path.resolve()
    return CatalogKey(str(path), path.stat().st_mtime_ns)


UNIT_PAGE = "pages/unit.py"


def unit_link(run_id: str, key: str, label: str | None = None) -> None:
    """A link to a unit's page (``/unit?run=...&unit=layer:unit``)."""
    st.page_link(UNIT_PAGE, label=label or key, query_params={"run": run_id, "unit": key},
                 icon=":material/open_in_new:")
