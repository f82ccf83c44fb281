"""Blind annotation of hidden units: sheets for a person to look at, then their answers joined back.

The protocol (who sees what, what to write) is ``data/annotations/PROTOCOL.md``. Two steps:

``render``: draw ``--per-layer`` units of each of ``--layers`` with ``numpy.random.default_rng(seed)``
(per layer, in the order given: ``rng.choice`` over the layer's units not excluded, without
replacement, sorted — with nothing excluded this is exactly how ``../shared/data/annotations-lite0``
was drawn), then number the sheets in a shuffled order so a sheet's number says nothing about its
layer. Each sheet is one PNG: the unit's top 8 exemplars (the model's view thumbnails, upsampled to
``--tile`` pixels), the region above the unit's threshold kept bright and the rest dimmed to 25%,
4 across and 2 down, no text. The sheets folder holds only ``sheet-NNN.png``; the key
(``key.csv``: sheet,model,layer,unit) and ``sample.json`` go to a different folder, which the
annotator never opens.

``join``: the annotator's CSV (sheet,annotation,confidence,one_concept,kind) and the key become
``OUT/<model>/annotations.csv``, ``kinds.csv`` and ``sample.json`` in the format of
``../shared/data/annotations-lite0``.

Usage:
    python scripts/annotation_sheets.py render --catalog C --layers blocks.3,blocks.4 --per-layer 10 \\
        --seed 2 --sheets /work/sheets/lite1 --key /work/sheets-keys/lite1 [--exclude sample.json]
    python scripts/annotation_sheets.py join --answers answers.csv --key /work/sheets-keys/lite1 \\
        --out data/annotations
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalog_app.render import grid, highlight  # noqa: E402
from milan_core.catalog import Catalog  # noqa: E402
from milan_core.errors import UserError  # noqa: E402
from milan_core.exemplars import mask  # noqa: E402

#: What the shared annotations showed: 8 exemplars, the outside at 25% brightness, 4 x 2 tiles.
EXEMPLARS = 8
DIM = 0.25
COLUMNS, ROWS = 4, 2
TILE = 200
GAP = 6

KEY_COLUMNS = ["sheet", "model", "layer", "unit"]
ANSWER_COLUMNS = ["sheet", "annotation", "confidence", "one_concept", "kind"]
ONE_CONCEPT = ("yes", "mixed", "unclear")
#: The annotator writes the singular; kinds.csv uses the shared file's plural words.
KINDS = {
    "part": "parts",
    "object": "objects",
    "colour": "colours",
    "texture": "textures",
    "position": "positions",
    "edge/shape": "edges/shapes",
    "highlight": "highlights",
    "scene": "scenes",
    "unclear": "unclear",
}


@dataclass(frozen=True)
class Sheet:
    """One rendered sheet: its opaque file name and the unit it shows."""

    name: str
    layer: str
    unit: int


# -- drawing the sample -----------------------------------------------------------------------


def excluded_keys(samples: Sequence[Path]) -> set[str]:
    """The ``layer:unit`` keys listed in sample.json files (units annotated before)."""
    keys: set[str] = set()
    for path in samples:
        try:
            keys.update(json.loads(path.read_text())["units"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"cannot read the units of {path} (a sample.json with a 'units' list): {error}") from error
    return keys


def draw_units(
    layer_sizes: dict[str, int], per_layer: int, seed: int, exclude: set[str] = frozenset()
) -> list[tuple[str, int]]:
    """``per_layer`` units of every layer (in the given order), not excluded, sorted within a layer.

    One generator for all layers, used layer by layer, so a sample is reproducible from its seed."""
    rng = np.random.default_rng(seed)
    drawn = []
    for layer, n_units in layer_sizes.items():
        candidates = np.array([u for u in range(n_units) if f"{layer}:{u}" not in exclude])
        if len(candidates) < per_layer:
            raise UserError(f"{layer} has {len(candidates)} units left to draw, fewer than {per_layer}")
        drawn += [(layer, int(u)) for u in sorted(rng.choice(candidates, per_layer, replace=False))]
    return drawn


# -- rendering --------------------------------------------------------------------------------


def unit_tiles(
    catalog: Catalog, unit_id: int, tile: int = TILE
) -> tuple[list[Image.Image], list[float], tuple[int, int]]:
    """A unit's top exemplars as tiles (region bright, the rest at ``DIM``, no outline), each tile's
    share of region pixels, and the activation map's shape."""
    exemplars = catalog.exemplars(unit_id).head(EXEMPLARS)
    tiles, shares = [], []
    for row in exemplars.itertuples():
        thumbnail = catalog.image(int(row.image_id)).thumbnail
        tiles.append(highlight(thumbnail, row.map, float(row.threshold), size=tile, dim=DIM, outlined=False))
        shares.append(round(float(mask(row.map, float(row.threshold), tile).mean()), 3))
    return tiles, shares, (int(exemplars.map_height.iloc[0]), int(exemplars.map_width.iloc[0]))


def check_folders(sheets: Path, key: Path) -> None:
    """Refuse a key folder inside the sheets folder (or the reverse), and sheets already there."""
    sheets, key = sheets.resolve(), key.resolve()
    if sheets == key or sheets in key.parents or key in sheets.parents:
        raise UserError(
            f"the key folder {key} must lie outside the sheets folder {sheets} (the annotator sees that one)"
        )
    if sheets.is_dir() and any(sheets.glob("sheet-*.png")):
        raise UserError(f"{sheets} already holds sheets; choose an empty folder")
    if (key / "key.csv").exists():
        raise UserError(f"{key / 'key.csv'} exists already; choose another key folder")


def render_sheets(
    catalog_path: Path,
    layers: Sequence[str],
    per_layer: int,
    seed: int,
    sheets_dir: Path,
    key_dir: Path,
    run_id: str | None = None,
    exclude: set[str] = frozenset(),
    tile: int = TILE,
) -> list[Sheet]:
    """Draw the units, write one sheet each into ``sheets_dir`` and the key and sample into ``key_dir``."""
    check_folders(sheets_dir, key_dir)
    with Catalog(catalog_path) as catalog:
        run = catalog.run(run_id)
        known = catalog.layers(run.run_id).set_index("layer").n_units
        missing = [layer for layer in layers if layer not in known.index]
        if missing:
            raise UserError(f"run {run.run_id} has no layer {', '.join(missing)}; it has {', '.join(known.index)}")
        units = draw_units({layer: int(known[layer]) for layer in layers}, per_layer, seed, exclude)
        # Sheet numbers follow a shuffled order (a generator seeded [seed, 1]), blind to the layer.
        order = np.random.default_rng([seed, 1]).permutation(len(units))
        sheets_dir.mkdir(parents=True, exist_ok=True)
        key_dir.mkdir(parents=True, exist_ok=True)
        sheets, meta = [], {}
        for number, index in enumerate(tqdm(order, desc="sheets", unit="sheet"), start=1):
            layer, unit = units[index]
            tiles, shares, shape = unit_tiles(catalog, catalog.unit_id(run.run_id, f"{layer}:{unit}"), tile)
            sheet = Sheet(f"sheet-{number:03d}.png", layer, unit)
            grid(tiles, COLUMNS, ROWS, GAP).save(sheets_dir / sheet.name)
            sheets.append(sheet)
            meta[f"{layer}:{unit}"] = {"n_ex": len(tiles), "map_shape": list(shape), "mask_frac": shares}
    key = pd.DataFrame([(s.name, run.model, s.layer, s.unit) for s in sheets], columns=KEY_COLUMNS)
    key.to_csv(key_dir / "key.csv", index=False)
    sample = {
        "run_id": run.run_id,
        "model": run.model,
        "seed": seed,
        "units": [f"{layer}:{unit}" for layer, unit in units],
        "meta": {f"{layer}:{unit}": meta[f"{layer}:{unit}"] for layer, unit in units},
    }
    (key_dir / "sample.json").write_text(json.dumps(sample, indent=1) + "\n")
    return sheets


# -- joining the answers ----------------------------------------------------------------------


def read_answers(path: Path) -> pd.DataFrame:
    """The annotator's CSV, checked: known columns, confidence 1-3, one_concept and kind from the lists."""
    try:
        answers = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the answers {path}: {error}") from error
    missing = [c for c in ANSWER_COLUMNS if c not in answers.columns]
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)}; expected {','.join(ANSWER_COLUMNS)}")
    answers = answers[ANSWER_COLUMNS].apply(lambda column: column.str.strip())
    problems = [
        f"{row.sheet}: {what}"
        for row in answers.itertuples()
        for what, bad in (
            ("empty annotation", not row.annotation),
            (f"confidence {row.confidence!r} is not 1, 2 or 3", row.confidence not in ("1", "2", "3")),
            (f"one_concept {row.one_concept!r} is not {'/'.join(ONE_CONCEPT)}", row.one_concept not in ONE_CONCEPT),
            (f"kind {row.kind!r} is not one of {', '.join(KINDS)}", row.kind not in KINDS),
        )
        if bad
    ]
    if answers.sheet.duplicated().any():
        problems.append(f"sheets answered twice: {', '.join(answers.sheet[answers.sheet.duplicated()])}")
    if problems:
        raise UserError(f"{path}: " + "; ".join(problems))
    return answers.assign(confidence=answers.confidence.astype(int))


def join_answers(answers_path: Path, key_dir: Path, out_dir: Path) -> Path:
    """Write ``out_dir/<model>/`` annotations.csv, kinds.csv and sample.json (the annotated units, in
    sample order); returns that folder. An existing annotations.csv there is never overwritten."""
    answers = read_answers(answers_path)
    key = pd.read_csv(key_dir / "key.csv")
    sample = json.loads((key_dir / "sample.json").read_text())
    unknown = sorted(set(answers.sheet) - set(key.sheet))
    if unknown:
        raise UserError(f"{answers_path} answers sheets the key does not have: {', '.join(unknown)}")
    joined = key.merge(answers, on="sheet")
    joined["key"] = joined.layer + ":" + joined.unit.astype(str)
    order = {unit: position for position, unit in enumerate(sample["units"])}
    joined = joined.sort_values("key", key=lambda keys: keys.map(order))
    target = out_dir / sample["model"]
    if (target / "annotations.csv").exists():
        raise UserError(f"{target / 'annotations.csv'} exists; join into another --out or merge by hand")
    target.mkdir(parents=True, exist_ok=True)
    joined[["model", "layer", "unit", "annotation", "confidence", "one_concept"]].to_csv(
        target / "annotations.csv", index=False
    )
    joined.assign(kind=joined.kind.map(KINDS))[["layer", "unit", "kind"]].to_csv(target / "kinds.csv", index=False)
    annotated = list(joined.key)
    kept = {**sample, "units": annotated, "meta": {unit: sample["meta"][unit] for unit in annotated}}
    (target / "sample.json").write_text(json.dumps(kept, indent=1) + "\n")
    return target


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    render = steps.add_parser("render", help="draw units and render one blind sheet each")
    render.add_argument("--catalog", type=Path, required=True)
    render.add_argument("--run", default=None, help="run id (default: the catalog's newest run)")
    render.add_argument("--layers", required=True, help="comma-separated layers, drawn in this order")
    render.add_argument("--per-layer", type=int, required=True, help="units drawn from each layer")
    render.add_argument("--seed", type=int, required=True)
    render.add_argument("--exclude", type=Path, action="append", default=[], help="a sample.json whose units to skip")
    render.add_argument("--tile", type=int, default=TILE, help="pixels a side of each exemplar tile")
    render.add_argument("--sheets", type=Path, required=True, help="folder for the sheets (what the annotator sees)")
    render.add_argument("--key", type=Path, required=True, help="folder for key.csv and sample.json (elsewhere)")
    join = steps.add_parser("join", help="join an annotator's answers with the key")
    join.add_argument("--answers", type=Path, required=True, help="CSV: " + ",".join(ANSWER_COLUMNS))
    join.add_argument("--key", type=Path, required=True, help="the folder holding key.csv and sample.json")
    join.add_argument("--out", type=Path, default=Path("data/annotations"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        if args.step == "render":
            layers = [layer.strip() for layer in args.layers.split(",") if layer.strip()]
            sheets = render_sheets(
                args.catalog, layers, args.per_layer, args.seed, args.sheets, args.key, args.run,
                excluded_keys(args.exclude), args.tile,
            )
            print(f"{len(sheets)} sheets in {args.sheets}; key in {args.key / 'key.csv'}")
        else:
            print(f"annotations written to {join_answers(args.answers, args.key, args.out)}")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
