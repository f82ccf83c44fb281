"""The Audit and Importance pages in the real Streamlit app (streamlit.testing.v1.AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "catalog_app" / "app.py")


def run_page(monkeypatch: pytest.MonkeyPatch, catalog: Path, page: str, **params: str) -> AppTest:
    monkeypatch.setenv("MILAN_CATALOG", str(catalog))
    app = AppTest.from_file(APP, default_timeout=120)
    app.switch_page(page)
    for name, value in params.items():
        app.query_params[name] = value
    return app.run()


def test_the_audit_page_draws_bars_and_links_the_matching_units(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path
) -> None:
    app = run_page(monkeypatch, described_catalog, "screens/audit.py", q="dog")
    assert not app.exception
    caption = next(c.value for c in app.caption if "matching units" in c.value)
    assert int(caption.split()[0]) > 10 and "0.50" in caption
    assert len(app.get("plotly_chart")) == 1
    assert any("dog" in m.value.lower() for m in app.markdown)


def test_the_audit_page_says_when_nothing_matches(monkeypatch: pytest.MonkeyPatch, described_catalog: Path) -> None:
    app = run_page(monkeypatch, described_catalog, "screens/audit.py", q="qwxzv")
    assert not app.exception and app.warning[0].value.startswith("no unit")
    assert not app.get("plotly_chart")


def test_the_importance_page_draws_the_stored_curves_and_check(monkeypatch: pytest.MonkeyPatch, ablation) -> None:
    app = run_page(monkeypatch, ablation.catalog, "screens/importance.py")
    assert not app.exception
    assert len(app.get("plotly_chart")) == 1
    table = app.dataframe[0].value
    assert table.concept.tolist() == ["cat"] and table.drop_on_concept.iloc[0] > table.drop_on_others.iloc[0]


def test_the_importance_page_explains_how_to_make_results(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path
) -> None:
    app = run_page(monkeypatch, described_catalog, "screens/importance.py")
    assert not app.exception and "milan_core ablate" in app.info[0].value
