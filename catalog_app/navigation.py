"""Browser history, scrolling and keyboard shortcuts that Streamlit does not do by itself.

Measured in Chromium (``window.history`` instrumented): a new search replaced the address instead of
adding a history entry, and a card's link added two entries (Streamlit's ``page_link`` first pushes
the target's query onto the current page, then the page), so Back led to a broken search page.
``navigation.js``, added once per tab to the app's own window by a same-origin component frame
(as a ``<script>`` of the app's document: functions of the frame itself stop running when
Streamlit redraws the frame), makes a change of query,
unit or image one history entry, merges the double push into one, scrolls to the top when the page
or the results page changes, and adds the shortcuts listed in ``SHORTCUTS``.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit.components.v1 as components

SCRIPT = (Path(__file__).with_name("navigation.js")).read_text(encoding="utf-8")
SHORTCUTS = (
    "Keys: / search box · j next unit · k previous unit (on a unit's page) · browser Back returns to the results"
)


#: The frame's own script: add navigation.js to the app's document unless a frame did already.
LOADER = """<script>
const app = window.parent;
if (!app.__milanNavigation) {
  const script = app.document.createElement("script");
  script.textContent = %s;
  app.document.head.appendChild(script);
}
</script>"""


def install() -> None:
    """Add the navigation script to the page (from a zero-height frame, once per tab)."""
    components.html(LOADER % json.dumps(SCRIPT), height=0)
