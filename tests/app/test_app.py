"""The Streamlit app itself (streamlit.testing.v1.AppTest) on real fixture catalogs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_search import HOSTILE_QUERIES

from catalog_app.common import CATALOG_DIRS_ENV
from catalog_app.probe import DEVICE_ENV
from catalog_app.text import markdown_text
from milan_core.catalog import Catalog
from milan_core.catalog.notes import Notes

APP = str(Path(__file__).resolve().parents[2] / "catalog_app" / "app.py")
TIMEOUT = 120


def run_app(
    monkeypatch: pytest.MonkeyPatch, catalog: Path, page_file: str | None = None, /, **params: str | list[str]
) -> AppTest:
    """Run the app once on ``catalog`` (via MILAN_CATALOG), on ``page_file``, with URL query parameters."""
    monkeypatch.setenv("MILAN_CATALOG", str(catalog))
    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if page_file:
        app.switch_page(page_file)
    for name, value in params.items():
        app.query_params[name] = value
    return app.run()


def card_descriptions(app: AppTest) -> list[str]:
    """The descriptions on the result cards, in order (the card's first plain markdown line)."""
    return [m.value for m in app.main.markdown if not m.value.startswith(("**", "_", "[#"))]


def exemplar_links(app: AppTest) -> list[str]:
    """Each card's line of links to its exemplars' image pages, in card order."""
    return [m.value for m in app.main.markdown if m.value.startswith("[#")]


def matching(app: AppTest) -> str:
    return next(c.value for c in app.main.caption if "matching units" in c.value)


def test_searching_face_shows_the_face_units_first_with_pictures(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path
) -> None:
    app = run_app(monkeypatch, described_catalog)
    assert not app.exception and matching(app).startswith("1360 matching units")
    app.text_input(key="q").input("face").run()
    assert not app.exception
    assert card_descriptions(app)[:2] == ["human faces", "spotted dog faces"]
    assert matching(app).startswith("2 matching units")
    assert len(app.main.get("image")) == 2
    with Catalog(described_catalog) as catalog:
        run = catalog.run().run_id
        first = catalog.exemplars(catalog.unit_id(run, "blocks.6:17"), decode=False).image_id.tolist()[:3]
    expected = " · ".join(f"[#{i + 1}](image?run={run}&image={image})" for i, image in enumerate(first))
    assert exemplar_links(app)[0] == expected


def test_query_parameters_restore_a_search_and_filters_narrow_it(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path
) -> None:
    app = run_app(monkeypatch, described_catalog, q="faces", sim="0.4")
    assert card_descriptions(app)[:3] == ["human faces", "spotted dog faces", "portraits of people"]
    assert any(m.value.startswith("**Related**") for m in app.main.markdown)  # the divider before portraits
    layer = run_app(monkeypatch, described_catalog, layer="blocks.2")
    assert matching(layer).startswith("40 matching units")
    narrower = run_app(monkeypatch, described_catalog, layer="blocks.2", evidence=["scene", "texture"], conf="0.5")
    count = int(matching(narrower).split()[0])
    assert 0 < count < 40
    assert set(card_descriptions(narrower)) <= {"green grass", "blue sky", "white and black stripes"}


def test_the_unit_page_loads_from_query_parameters(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path, small_catalog_run: str
) -> None:
    app = run_app(monkeypatch, described_catalog, "screens/unit.py", run=small_catalog_run, unit="blocks.6:17")
    assert not app.exception
    assert app.title[0].value == markdown_text("blocks.6:17") and app.subheader[0].value == "“human faces”"
    assert len(app.main.get("image")) == 5  # k = 5 exemplars, large
    assert len(app.main.get("plotly_chart")) == 1
    assert len(app.main.dataframe[0].value) == 3  # the candidates
    links = [link.proto.label for link in app.main.get("page_link")]
    assert any("spotted dog faces" in label for label in links)  # nearest by meaning
    app.main.slider[0].set_value(app.main.slider[0].min).run()  # redraw every region
    assert not app.exception


def test_an_undescribed_unit_still_shows_its_exemplars(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path, small_catalog_run: str
) -> None:
    app = run_app(monkeypatch, described_catalog, "screens/unit.py", run=small_catalog_run, unit="classifier:7")
    assert not app.exception and app.title[0].value == markdown_text("classifier:7")
    assert "no description yet" in app.info[0].value
    assert len(app.main.get("image")) == 5 and len(app.main.get("plotly_chart")) == 1


def test_the_overview_page_shows_the_runs_vocabulary(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path
) -> None:
    app = run_app(monkeypatch, described_catalog, "screens/overview.py")
    assert not app.exception
    assert [m.value for m in app.metric] == ["36", "1360", "26%"]  # the probe set's 36 photos
    assert app.caption[0].value.startswith(markdown_text("efficientnet-lite0 · layers blocks.2, blocks.6, classifier"))
    links = {link.proto.label: link for link in app.main.get("page_link")}
    assert markdown_text("human faces") in links  # each most used description opens its search
    assert len(app.get("plotly_chart")) == 1 + 2  # evidence per layer, then one tab per described layer


def test_ticking_units_selects_them_for_export(monkeypatch: pytest.MonkeyPatch, described_catalog: Path) -> None:
    app = run_app(monkeypatch, described_catalog, q="face")
    assert app.segmented_control(key="scope").options == ["selected units (0)", "all filtered units (2)"]
    assert app.segmented_control(key="scope").value == "selected"
    assert app.get("download_button")[0].proto.disabled
    app.main.checkbox[0].check().run()
    app.main.checkbox[1].check().run()
    assert app.segmented_control(key="scope").options[0] == "selected units (2)"
    assert not app.get("download_button")[0].proto.disabled
    assert any("Basket: 2 unit(s)" in c.value for c in app.sidebar.caption)


@pytest.mark.parametrize("page", [None, "screens/unit.py", "screens/overview.py"])
def test_missing_empty_and_newer_catalogs_get_a_sentence_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, empty_catalog: Path, newer_catalog: Path, page: str | None
) -> None:
    expected = {
        tmp_path / "nowhere.duckdb": "make one with: python -m milan_core dissect --out",
        empty_catalog: "is empty; make one with: python -m milan_core dissect --out",
        newer_catalog: "newer than this code's",
    }
    for catalog, sentence in expected.items():
        app = run_app(monkeypatch, catalog, page)
        assert not app.exception
        assert [markdown_text(sentence) in info.value for info in app.info] == [True]


def test_the_sidebar_lists_the_configured_folders_catalogs_and_switches(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path, small_catalog: Path
) -> None:
    monkeypatch.setenv(CATALOG_DIRS_ENV, os.pathsep.join(str(p.parent) for p in (described_catalog, small_catalog)))
    app = run_app(monkeypatch, described_catalog, q="face")
    assert matching(app).startswith("2 matching units")
    choice = app.selectbox(key="catalog_field")
    assert choice.options[0] == _label(described_catalog)  # the default first
    assert sorted(choice.options) == sorted(_label(p) for p in (described_catalog, small_catalog))
    choice.select(str(small_catalog.resolve())).run()  # dissected, not described
    assert not app.exception
    assert [info.value.startswith("No unit has a description yet") for info in app.info] == [True]
    app.run()  # the choice holds on the next run
    assert app.selectbox(key="catalog_field").value == str(small_catalog.resolve())
    assert [info.value.startswith("No unit has a description yet") for info in app.info] == [True]


def _label(path: Path) -> str:
    return f"{path.name} ({path.parent.name})"


def test_the_sidebar_never_offers_a_file_outside_the_configured_folders(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path, small_catalog: Path
) -> None:
    monkeypatch.setenv(CATALOG_DIRS_ENV, str(described_catalog.parent))
    app = run_app(monkeypatch, described_catalog)
    assert app.selectbox(key="catalog_field").options == [_label(described_catalog)]
    assert not app.sidebar.text_input  # nowhere to type a path: nothing tells whether one exists


MALFORMED = [
    {"page": "abc"}, {"page": "-4"}, {"page": "9999"}, {"conf": "lots"}, {"sim": "7"}, {"score": "nan"},
    {"layer": ["no-such-layer", "'; DROP TABLE units; --"]}, {"evidence": "💥"}, {"runs": "x" * 10_000},
    {"describer": "nobody"}, {"q": ""}, {"act": "1e999"},
]


HOSTILE_PARAMS = MALFORMED + [{"q": q} for q in HOSTILE_QUERIES]


@pytest.mark.parametrize("params", HOSTILE_PARAMS, ids=[f"{next(iter(p))}-{i}" for i, p in enumerate(HOSTILE_PARAMS)])
def test_hostile_and_malformed_parameters_break_nothing_and_change_nothing(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path, file_hash: Callable[[Path], str], params: dict
) -> None:
    before = file_hash(described_catalog)
    app = run_app(monkeypatch, described_catalog, **params)
    assert not app.exception and app.title[0].value == "Search units"
    assert file_hash(described_catalog) == before


def test_an_unknown_run_in_a_unit_link_falls_back_to_the_first_run(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path
) -> None:
    app = run_app(monkeypatch, described_catalog, "screens/unit.py", run="nope", unit="blocks.6:17")
    assert not app.exception and app.title[0].value == markdown_text("blocks.6:17")


@pytest.mark.parametrize(
    "unit", ["x:y:z", "'; DROP TABLE units; --", "blocks.6:99999999999999999999", "blocks.6:-1", "😀" * 1000],
    ids=range(5),
)
def test_malformed_unit_links_get_a_sentence(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path, file_hash: Callable[[Path], str], unit: str
) -> None:
    before = file_hash(described_catalog)
    app = run_app(monkeypatch, described_catalog, "screens/unit.py", unit=unit)
    assert not app.exception
    assert [info.value.startswith(markdown_text("no unit")) for info in app.info] == [True]
    assert file_hash(described_catalog) == before


@pytest.fixture()
def own_catalog(described_catalog: Path, tmp_path: Path) -> Path:
    """A private copy of the described catalog, for tests that write notes beside it."""
    copy = tmp_path / "catalog.duckdb"
    copy.write_bytes(described_catalog.read_bytes())
    return copy


def test_votes_and_labels_on_the_unit_page_go_to_the_notes_file_not_the_catalog(
    monkeypatch: pytest.MonkeyPatch, own_catalog: Path, small_catalog_run: str, file_hash: Callable[[Path], str]
) -> None:
    before = file_hash(own_catalog)
    app = run_app(monkeypatch, own_catalog, "screens/unit.py", run=small_catalog_run, unit="blocks.6:17")
    app.button(key="vote_1").click().run()
    assert not app.exception
    assert any("agree 1 · disagree 0 · you agree" in c.value for c in app.main.caption)
    app.main.text_input[-1].input("helmet")
    app.main.button[-1].click().run()  # the form's "Save label"
    assert not app.exception
    notes = Notes(own_catalog)
    assert notes.vote_counts().agree.tolist() == [1]
    assert notes.labels(small_catalog_run, "blocks.6:17").label.tolist() == ["helmet"]
    assert any("Labels: helmet" in c.value for c in app.main.caption)
    assert file_hash(own_catalog) == before  # the catalog is only read

    found = run_app(monkeypatch, own_catalog, q="helmet")  # no description says it: the label does
    assert not found.exception and matching(found).startswith("1 matching units")
    why = "why: " + markdown_text("matched a note: label 'helmet'")
    assert any(":violet-badge[matched a note] " + why in c.value for c in found.main.caption)
    assert card_descriptions(found) == ["human faces"]


def test_the_unit_page_links_its_neighbours_and_its_images(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path, small_catalog_run: str
) -> None:
    app = run_app(monkeypatch, described_catalog, "screens/unit.py", run=small_catalog_run, unit="blocks.6:17")
    app.button(key="next_unit").click().run()
    assert not app.exception and app.title[0].value == markdown_text("blocks.6:18")
    app.button(key="previous_unit").click().run()
    assert app.title[0].value == markdown_text("blocks.6:17")
    links = [link.proto for link in app.main.get("page_link")]
    labels = [link.label for link in links]
    assert sum(label == "units of this image" for label in labels) == 5
    assert all(f"run={small_catalog_run}" in link.query_string for link in links if link.query_string)


def test_the_image_page_lists_the_units_that_hold_the_image(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path, small_catalog_run: str
) -> None:
    with Catalog(described_catalog) as catalog:
        image_id = int(catalog.exemplars(catalog.unit_id(small_catalog_run, "blocks.6:17"), decode=False).image_id[0])
    app = run_app(monkeypatch, described_catalog, "screens/image.py", run=small_catalog_run, image=str(image_id))
    assert not app.exception
    labels = [link.proto.label for link in app.main.get("page_link")]
    assert f"**{markdown_text('blocks.6:17')}**" in labels
    assert any(m.value.startswith(f"**{markdown_text('blocks.2')}**") for m in app.main.markdown)  # grouped by layer
    for hostile in ("abc", "-1", "9" * 40, "99999"):
        app = run_app(monkeypatch, described_catalog, "screens/image.py", image=hostile)
        assert not app.exception


def test_the_live_probe_runs_on_the_apps_device_or_says_in_a_sentence_why_not(
    monkeypatch: pytest.MonkeyPatch, described_catalog: Path, small_catalog_run: str
) -> None:
    with Catalog(described_catalog) as catalog:
        image_id = int(catalog.exemplars(catalog.unit_id(small_catalog_run, "blocks.6:17"), decode=False).image_id[0])
    for device, shown in (("cpu", "probed in"), ("cuda:99", "cannot run on the device the app was started with")):
        monkeypatch.setenv(DEVICE_ENV, device)
        app = run_app(monkeypatch, described_catalog, "screens/image.py", run=small_catalog_run, image=str(image_id))
        app.toggle(key="probe_stored").set_value(True).run()
        assert not app.exception
        said = [c.value for c in app.main.caption] + [w.value for w in app.main.warning]
        assert any(shown in text.replace("\\", "") for text in said), said
        assert (device == "cpu") == any("on cpu" in text for text in said)


def test_the_audit_shows_two_runs_side_by_side_with_their_exemplars(
    monkeypatch: pytest.MonkeyPatch, two_run_catalog: Path
) -> None:
    app = run_app(monkeypatch, two_run_catalog, "screens/audit.py", q="face")
    assert not app.exception
    assert [h.value for h in app.subheader] == ["Runs side by side", "Matching units"]
    with Catalog(two_run_catalog) as catalog:
        runs = catalog.runs()
    assert sorted(runs.model) == ["efficientnet-lite0", "efficientnet-lite1"]
    heads = [m.value for m in app.main.markdown if m.value.startswith("**efficientnet")]
    assert heads == [f"**{markdown_text(r.run_id)}** · {markdown_text(r.model)}" for r in runs.itertuples()]
    assert len(app.main.get("image")) == 4  # each model's "human faces" and "spotted dog faces" strips
    one = run_app(monkeypatch, two_run_catalog, "screens/audit.py", q="face", runs=[runs.run_id.iloc[0]])
    assert not one.exception and "Runs side by side" not in [h.value for h in one.subheader]


def test_ticked_units_are_compared_side_by_side(monkeypatch: pytest.MonkeyPatch, described_catalog: Path) -> None:
    app = run_app(monkeypatch, described_catalog, q="face")
    app.main.checkbox[0].check().run()
    app.main.checkbox[1].check().run()
    app.switch_page("screens/compare.py").run()
    assert not app.exception and app.title[0].value == "Compare units"
    assert [m.value for m in app.main.markdown if not m.value.startswith(("**", "_"))][:2] == [
        "human faces", "spotted dog faces"]
    assert len(app.main.get("plotly_chart")) == 2 and len(app.main.get("image")) == 2
    app.button[0].click().run()  # empty the basket
    assert "Tick units" in app.info[0].value


def test_cards_show_the_significance_of_a_description(
    monkeypatch: pytest.MonkeyPatch, own_catalog: Path, small_catalog_run: str
) -> None:
    app = run_app(monkeypatch, own_catalog, q="face")
    assert not any("significance" in c.value for c in app.main.caption)  # none stored yet
    with Catalog(own_catalog, writable=True) as catalog:
        unit_id = catalog.unit_id(small_catalog_run, "blocks.6:17")
        catalog.con.execute("UPDATE descriptions SET significance = 0.003 WHERE unit_id = ?", [unit_id])
    app = run_app(monkeypatch, own_catalog, q="face")
    assert not app.exception
    assert any("significance 0.003" in c.value for c in app.main.caption)
    assert any("strong evidence 0.90" in c.value for c in app.main.caption)  # the confidence badge
    assert any("  \ncandidates: " in c.value for c in app.main.caption)
