"""Text from a catalog, a URL or a person, made safe to show: never markup, only the characters.

Streamlit draws markdown in ``st.markdown``, captions, info boxes and widget labels, so a unit
typed into a shared link as ``[click here](https://evil.example)`` would become a link inside the
app's own box, and ``![x](http://127.0.0.1:9/t.png)`` would make the visitor's browser fetch an
address. ``markdown_text`` backslash-escapes every ASCII punctuation character (CommonMark lets any
of them be escaped), which turns off links, images, emphasis, autolinks (``https\\://``, ``www\\.``,
``a\\@b``), Streamlit's ``:icon:`` and ``:red[...]`` directives and ``$`` maths at once. Plotly draws
a subset of HTML in its labels, so ``plotly_text`` escapes that instead.
"""

from __future__ import annotations

import html
import re

#: Every ASCII punctuation character (CommonMark's escapable set).
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAKS = re.compile(r"[\r\n\t\x00-\x08\x0b-\x1f]+")


def markdown_text(value: object) -> str:
    """``value`` as markdown that shows exactly its characters (on one line), with no markup."""
    return _PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(value)))


def plotly_text(value: object) -> str:
    """``value`` for a Plotly label or hover text, which would otherwise read HTML tags such as <a>."""
    return html.escape(str(value), quote=True)
