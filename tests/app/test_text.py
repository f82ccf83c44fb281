"""catalog_app.text: whatever a URL, a catalog or a person says is shown as its characters."""

from __future__ import annotations

import re

import pytest

from catalog_app.text import WORD_JOINER, markdown_text, plotly_text

HOSTILE_TEXTS = (
    "[click here](https://evil.example)",
    "[verify your account](https://evil.example/x)",
    "![x](http://127.0.0.1:9/t.png)",
    "https://evil.example www.evil.example ann@evil.example",
    ":red[alarm] :material/warning: $x^2$ <b>bold</b> **strong** `code` # heading",
)


@pytest.mark.parametrize("text", HOSTILE_TEXTS, ids=range(len(HOSTILE_TEXTS)))
def test_every_markdown_character_is_escaped(text: str) -> None:
    escaped = markdown_text(text)
    assert re.sub(r"\\(.)", r"\1", escaped).replace(WORD_JOINER, "") == text  # the same characters, unescaped
    assert not re.search(r"://|www\.|@\w", escaped.replace("\\", ""))  # no autolink can start
    assert not re.search(r"(?<!\\)[\[\]()!:*`$<>#@.]", escaped)  # no markup character left bare


def test_line_breaks_and_control_characters_become_spaces() -> None:
    assert markdown_text("a\n\n# b\x00c") == "a \\# b c"


def test_plotly_text_escapes_html() -> None:
    assert (
        plotly_text('<a href="https://evil.example">x</a>')
        == "&lt;a href=&quot;https://evil.example&quot;&gt;x&lt;/a&gt;"
    )
