"""Browser history, scrolling and keyboard shortcuts that Streamlit does not do by itself.

Measured in Chromium (``window.history`` instrumented): a new search replaced the address instead of
adding a history entry, and a card's link added two entries (Streamlit's ``page_link`` first pushes
the target's query onto the current page, then the page), so Back led to a broken search page.
``navigation.js``, run once per tab in the app's own document (``st.html`` with its JavaScript:
no frame, and ``components.html``, which Streamlit deprecated, is not needed), makes a change of
query, unit or image one history entry, merges the double push into one, scrolls to the top when the page
or the results page changes, and adds the shortcuts listed in ``SHORTCUTS``.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

SCRIPT = (Path(__file__).with_name("navigation.js")).read_text(encoding="utf-8")
SHORTCUTS = (
    "Keys: / search box · j next unit · k previous unit (on a unit's page) · browser Back returns to the results"
)


#: The script as a JavaScript string literal with no "<" in it: ``st.html`` sanitizes its body with
#: DOMPurify, which drops a whole ``<script>`` whose text holds "<" before a letter (``i<n`` would do).
LITERAL = json.dumps(SCRIPT).replace("<", "\\u003c")
LOADER = f"<script>(0, eval)({LITERAL})</script>"


def install() -> None:
    """Run the navigation script in the app's own document (``st.html`` with its JavaScript, no frame;
    the script installs itself once per tab, however often the page is redrawn)."""
    st.html(LOADER, unsafe_allow_javascript=True)
