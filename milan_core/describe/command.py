"""``describe`` and ``evaluate``: the command-line face of the description stage.

``describe_run`` is the whole stage for one run: read the run, let the describer propose, choose
with the shared PMI rule, embed, and write in one transaction. ``dissect --describe`` calls it too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from milan_core.catalog import Catalog
from milan_core.config import CATALOG_PATH, DEFAULT_LAYERS, DEFAULT_MODEL, QUANTILE, DissectConfig, K
from milan_core.describe.base import (
    DEFAULT_LAMBDA,
    MAX_LAYER_SHARE,
    agree,
    layer_priors,
    layer_shares,
    prefer_specific,
    select,
    spread_layer_shares,
)
from milan_core.describe.registry import DEFAULT_DESCRIBER, make_describer
from milan_core.describe.store import candidate_vectors, description_tables, load_run_view, write_descriptions
from milan_core.runtime import add_device_argument, resolve_device, torch_threads

#: PyTorch threads while describing. Its work here is many small operations, and with two threads
#: on two shared cores each one waits for the other thread's turn: the eye's classes of 16,000
#: exemplar regions took 10.0 s of CPU (57 s wall) with two threads and 3.4 s with one (busy
#: machine). The second core runs the face and text detectors beside the eye instead.
DESCRIBE_THREADS = 1


def describe_run(catalog_path: Path, run_id: str | None, describer: str | None,
                 lam: float = DEFAULT_LAMBDA, device: str = "auto") -> tuple[str, str]:
    """Describe every unit of a run (None: the newest), replacing its descriptions by that describer,
    whose models (the eye, the detectors) run on ``device`` (``runtime.resolve_device``).

    Prints the time it took beside the dissection's, both without writing to the catalog (the
    dissection records its time before it writes). Returns (run id, describer name), for callers
    that read the descriptions back.
    """
    started = time.perf_counter()
    chosen = make_describer(describer, resolve_device(device))
    with Catalog(catalog_path) as catalog:
        run = load_run_view(catalog, run_id)
        dissect_seconds = catalog.run(run.run_id).seconds
    with torch_threads(DESCRIBE_THREADS):
        proposals = chosen.propose(run)
    layers = [u.layer for u in run.units]
    priors = layer_priors(chosen.log_prior, proposals, layers)
    kinds = getattr(chosen, "kind_prior", None)
    described = select([u.unit_id for u in run.units], proposals, priors, lam, kinds)
    vectors = candidate_vectors(described, getattr(chosen, "known_texts", list)())
    described = prefer_specific(agree(described, vectors), getattr(chosen, "entailments", dict)())
    described = spread_layer_shares(described, layers)
    descriptions, candidates = description_tables(described, chosen.name, vectors)
    seconds = time.perf_counter() - started
    write_descriptions(catalog_path, run.run_id, chosen.name, descriptions, candidates)
    print(f"described {len(described)} units of run {run.run_id} with {chosen.name} in {seconds:.1f} s "
          f"and wrote them in {time.perf_counter() - started - seconds:.1f} s; the dissection took "
          f"{dissect_seconds:.1f} s before its write: ratio {seconds / max(dissect_seconds, 1e-9):.2f}")
    for layer, (text, share) in layer_shares(described, layers).items():
        if share > MAX_LAYER_SHARE:
            print(f"note: {layer}: {share:.0%} of its units are {text!r}: they have no other description "
                  "better than chance", file=sys.stderr)
    return run.run_id, chosen.name


def cmd_describe(args: argparse.Namespace) -> int:
    describe_run(args.catalog, args.run, args.describer, args.lam, args.device)
    return 0


def _described_run(args: argparse.Namespace, layers: tuple[str, ...], workdir: Path) -> tuple[Path, str, str]:
    """The catalog, run and describer to evaluate.

    With ``--catalog``, its run as described (described now only if that describer has not yet);
    otherwise a fresh dissection into ``workdir`` (the describer sees only its images), described.
    """
    from milan_core.dissect import dissect

    name = (args.describer or DEFAULT_DESCRIBER).partition(":")[0]
    if args.catalog is not None:
        with Catalog(args.catalog) as catalog:
            run_id = catalog.run(args.run).run_id
            described = catalog.described_count(run_id, name)
        if described:
            return args.catalog, run_id, name
        print(f"note: run {run_id} has no {name} descriptions yet: describing it first, which writes them "
              f"into {args.catalog}", file=sys.stderr)
        path = args.catalog
    else:
        path = workdir / "catalog.duckdb"
        images = str(args.images) if args.images else None
        config = DissectConfig(model=args.model, images=images, layers=layers, k=args.k,
                               quantile=getattr(args, "quantile", QUANTILE), max_images=args.max_images, workers=0)
        run_id = dissect(config, path, device=args.device).run_id
    run_id, describer = describe_run(path, run_id, args.describer, device=args.device)
    return path, run_id, describer


def cmd_evaluate_final_layer(args: argparse.Namespace) -> int:
    from milan_core.describe.evaluate import final_layer_rows, layer_descriptions, write_table

    with tempfile.TemporaryDirectory(prefix="milan-evaluate-") as workdir:
        path, run_id, describer = _described_run(args, (args.layer,), Path(workdir))
        with Catalog(path) as catalog:
            frame = layer_descriptions(catalog, run_id, args.layer, describer)
    write_table(final_layer_rows(frame, describer), args.csv)
    return 0


def cmd_evaluate_segmentation(args: argparse.Namespace) -> int:
    from milan_core.describe.evaluate import best_concepts, layer_descriptions, segmentation_rows, write_table
    from milan_core.describe.segmentation import read_classes

    classes = read_classes(args.classes)
    layers = tuple(name.strip() for name in args.layers.split(",") if name.strip())
    with tempfile.TemporaryDirectory(prefix="milan-evaluate-") as workdir:
        path, run_id, describer = _described_run(args, layers, Path(workdir))
        with Catalog(path) as catalog:
            run = catalog.run(run_id)
            frame = pd.concat([layer_descriptions(catalog, run_id, layer, describer).assign(layer=layer)
                               for layer in run.layers])
            best = best_concepts(catalog, run_id, run.model, Path(run.probe_root), args.masks, classes)
    write_table(segmentation_rows(frame, best, describer), args.csv)
    return 0


def cmd_evaluate_annotations(args: argparse.Namespace) -> int:
    from milan_core.describe.evaluate import annotation_rows, read_annotations, write_table

    layers = tuple(name.strip() for name in args.layers.split(",") if name.strip())
    with tempfile.TemporaryDirectory(prefix="milan-evaluate-") as workdir:
        path, run_id, describer = _described_run(args, layers, Path(workdir))
        with Catalog(path) as catalog:
            run = catalog.run(run_id)
            annotations = read_annotations(args.annotations, run.model)
            layer_units = catalog.run_descriptions(run_id, describer, sorted(set(annotations.layer)))
            annotated = annotations.merge(layer_units, on=["layer", "unit"])
            candidates = catalog.unit_candidates(annotated.unit_id.tolist(), describer)
    write_table(annotation_rows(layer_units, annotations, candidates, describer), args.csv)
    return 0


def _add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model to dissect when no --catalog is given")
    parser.add_argument("--images", type=Path, default=None, help="probe images to dissect when no --catalog is given")
    parser.add_argument("--catalog", type=Path, default=None,
                        help="an existing catalog: evaluates its descriptions (describes the run if it has none)")
    parser.add_argument("--run", default=None, help="run id in --catalog (default: the newest)")
    parser.add_argument("--describer", default=None, help="describer to evaluate (default: evidence)")
    parser.add_argument("--k", type=int, default=K, help="exemplars per unit for a fresh dissection")
    parser.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    parser.add_argument("--csv", type=Path, default=None, help="write the table as rows method,metric,value")
    add_device_argument(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``describe`` and ``evaluate`` to the command line."""
    describe = subparsers.add_parser("describe", help="describe every unit of a run (MILAN's PMI selection)")
    describe.add_argument("--catalog", type=Path, default=CATALOG_PATH, help="catalog file (DuckDB)")
    describe.add_argument("--run", default=None, help="run id (default: the newest run)")
    describe.add_argument("--describer", default=None,
                          help=f"NAME or NAME:OPTION (default {DEFAULT_DESCRIBER}; evidence:EYE picks the eye model)")
    describe.add_argument("--lam", type=float, default=DEFAULT_LAMBDA, help="λ of the PMI rule (MILAN: 0.2)")
    add_device_argument(describe)
    describe.set_defaults(func=cmd_describe)

    evaluate = subparsers.add_parser("evaluate", help="measure description quality against known answers")
    checks = evaluate.add_subparsers(dest="check", required=True)
    final = checks.add_parser("final-layer", help="logit units of an ImageNet classifier: top-1 and similarity")
    _add_evaluation_arguments(final)
    final.add_argument("--layer", default="classifier", help="the logit layer (unit i = ImageNet class i)")
    final.set_defaults(func=cmd_evaluate_final_layer)
    segmentation = checks.add_parser("segmentation", help="hidden units vs labelled masks (Network Dissection IoU)")
    _add_evaluation_arguments(segmentation)
    segmentation.add_argument("--masks", type=Path, required=True, help="class-index PNG masks, same names as images")
    segmentation.add_argument("--classes", type=Path, required=True, help="YAML with classes: {id: name}")
    segmentation.add_argument("--layers", default=",".join(DEFAULT_LAYERS), help="comma-separated hidden layers")
    segmentation.set_defaults(func=cmd_evaluate_segmentation)
    annotations = checks.add_parser("annotations", help="hidden units vs blind human annotations (MiniLM similarity)")
    _add_evaluation_arguments(annotations)
    annotations.add_argument("--annotations", type=Path, required=True,
                             help="CSV with model,layer,unit,annotation (one row per annotated unit)")
    annotations.add_argument("--layers", default="blocks.3,blocks.4,blocks.5,blocks.6",
                             help="comma-separated layers to dissect when no --catalog is given")
    annotations.add_argument("--quantile", type=float, default=QUANTILE,
                             help="threshold quantile for a fresh dissection")
    annotations.set_defaults(func=cmd_evaluate_annotations)
