"""Text from a catalog, a URL or a person, made safe to show: never markup, only the characters.

Streamlit draws markdown in ``st.markdown``, captions, info boxes and widget labels, so a unit
typed into a shared link as ``[click here](https://evil.example)`` would become a link inside the
app's own box, and ``![x](http://127.0.0.1:9/t.png)`` would make the visitor's browser fetch an
address. ``markdown_text`` backslash-escapes every ASCII punctuation character (CommonMark lets any
of them be escaped), which turns off links, images, emphasis, Streamlit's ``:icon:`` and
``:red[...]`` directives and ``$`` maths at once. GitHub-style autolinks (``https://…``, ``www.…``,
``a@b.c``) are found in the text *after* escapes are read (seen in Chromium: an escaped
``https\\:\\/\\/evil.example`` still became a link), so a word joiner (U+2060, invisible) is put
inside ``://``, after ``www`` and after ``@``. Plotly draws a subset of HTML in its labels, so
``plotly_text`` escapes that instead.
"""

from __future__ import annotations

import html
import re

#: Every ASCII punctuation character (CommonMark's escapable set).
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAKS = re.compile(r"[\r\n\t\x00-\x08\x0b-\x1f]+")
#: Where an autolink could start: a scheme's "://", "www." and an e-mail's "@".
_AUTOLINK_STARTS = re.compile(r"(:)(//)|(?i:(www))(\.)|(@)()")
WORD_JOINER = "\u2060"


def _break_autolink(match: re.Match) -> str:
    head, tail = [part for part in match.groups() if part is not None]
    return head + WORD_JOINER + tail


def markdown_text(value: object) -> str:
    """``value`` as markdown that shows exactly its characters (on one line), with no markup."""
    text = _AUTOLINK_STARTS.sub(_break_autolink, _LINE_BREAKS.sub(" ", str(value)))
    return _PUNCTUATION.sub(r"\\\1", text)


def plotly_text(value: object) -> str:
    """``value`` for a Plotly label or hover text, which would otherwise read HTML tags such as <a>."""
    return html.escape(str(value), quote=True)
