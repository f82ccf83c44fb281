"""The catalog browser: ``streamlit run catalog_app/app.py`` (see ``catalog_app/common.py``).

Lists the pages (the built-in ones, then any other file in
``screens/``) and runs the chosen one, closing the catalog afterwards so writers are never locked out.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
if str(APP_DIR.parent) not in sys.path:  # `streamlit run` puts only this folder on the path
    sys.path.insert(0, str(APP_DIR.parent))

import streamlit as st  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from catalog_app.common import close_catalogs  # noqa: E402
from catalog_app.navigation import SHORTCUTS  # noqa: E402
from catalog_app.navigation import install as install_navigation  # noqa: E402

#: The built-in pages in menu order: (file in screens/, title, icon).
BUILT_IN = (
    ("search.py", "Search", ":material/search:"),
    ("unit.py", "Unit", ":material/grid_view:"),
    ("overview.py", "Overview", ":material/bar_chart:"),
    ("image.py", "Image", ":material/image_search:"),
    ("compare.py", "Compare", ":material/compare:"),
)


def pages() -> list[st.Page]:
    """The built-in pages, then every other page file (e.g. audit.py, importance.py) by name."""
    built_in = [
        st.Page(APP_DIR / "screens" / name, title=title, icon=icon, default=(i == 0))
        for i, (name, title, icon) in enumerate(BUILT_IN)
    ]
    names = {name for name, _, _ in BUILT_IN}
    extra = [
        st.Page(path, title=path.stem.replace("_", " ").capitalize())
        for path in sorted((APP_DIR / "screens").glob("*.py"))
        if path.name not in names and not path.name.startswith("_")
    ]
    return built_in + extra


def page_icon() -> Image.Image:
    """The tab's icon, drawn here: a ``:material/...:`` icon would make the browser fetch it from
    fonts.gstatic.com, and no page loads anything from outside the server."""
    icon = Image.new("RGB", (32, 32), "#fbfaf7")
    ImageDraw.Draw(icon).ellipse((4, 4, 28, 28), fill="#3d6b8c")
    return icon


def main() -> None:
    st.set_page_config(page_title="Neuron catalog", page_icon=page_icon(), layout="wide")
    page = st.navigation(pages())
    try:
        page.run()
    finally:
        close_catalogs()
        install_navigation()
        st.sidebar.caption(SHORTCUTS)


main()
