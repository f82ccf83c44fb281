"""The ``audit``, ``ablate`` and ``edit`` commands (registered by ``milan_core.cli``).

Each reads the catalog read-only, does its work, and only then opens the catalog for writing, for
one transaction; files (CSV, edited model) are written beside their target and renamed into place
inside that transaction, so a failure anywhere leaves neither a partial file nor partial rows.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from milan_core.applications import audit as audit_module
from milan_core.applications import concepts, importance
from milan_core.applications.editing import edit_payload
from milan_core.applications.evaluation import AblationEvaluator, load_labelled_probe
from milan_core.catalog import Catalog, RunRecord
from milan_core.catalog.search import DEFAULT_MIN_SIMILARITY
from milan_core.config import CATALOG_PATH, EVAL_BATCH_SIZE
from milan_core.errors import UserError
from milan_core.models import LoadedModel, load_recorded_model
from milan_core.runtime import add_device_argument, resolve_device

DEFAULT_ORDERS = "animal,artefact,colour,texture,specificity"
DEFAULT_CONCEPTS = "dog,bird,car"


def load_run_model(run: RunRecord, device: str = "cpu") -> LoadedModel:
    """The model a run dissected, with the same weights, on ``device`` (see ``--device``)."""
    loaded = load_recorded_model(run.model, run.config.get("weights"))
    loaded.module.to(resolve_device(device))
    return loaded


@contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``: renamed to it when the block succeeds, removed if not."""
    target = Path(target)
    if target.is_dir():
        raise UserError(f"{target} is a folder; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        yield partial
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def cmd_audit(args: argparse.Namespace) -> int:
    with Catalog(args.catalog) as catalog:
        result = audit_module.audit(catalog, args.query, args.run, args.describer, args.min_similarity, args.candidates)
    audit_module.store_audit(args.catalog, result)
    print(audit_module.format_audit(result))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    orders = _split(args.order)
    unknown = [o for o in orders if o not in importance.ORDERS]
    if unknown:
        raise UserError(f"unknown order {', '.join(unknown)}; choose from: {', '.join(importance.ORDERS)}")
    concept_names = _split(args.concepts)
    for concept in concept_names:
        concepts.concept_synset(concept)  # an unknown noun fails before any work
    with Catalog(args.catalog) as catalog:
        run = catalog.run(args.run)
        layers = importance.chosen_layers(catalog, run.run_id, _split(args.layers) if args.layers else None)
        describer = importance.pick_describer(catalog, run.run_id, args.describer)
        units = importance.layer_units(catalog, run.run_id, layers, describer)
    named = importance.named_orders(units, orders)
    for order in (o for o in orders if o not in named and o != importance.RANDOM):
        print(f"note: no described unit of {', '.join(layers)} falls in {order!r}; skipped", file=sys.stderr)
    model = load_run_model(run, args.device)
    labelled = load_labelled_probe(Path(args.images or run.probe_root), model, args.max_images)
    evaluator = AblationEvaluator(model, labelled, layers, args.batch_size)
    probe = evaluator.probe  # the images that decoded
    curves = importance.importance_curves(evaluator, units, list(named), args.seeds, args.steps, args.max_fraction)
    checks = [importance.class_check(evaluator, units, c, args.seeds) for c in concept_names]
    config = {"orders": list(named), "seeds": args.seeds, "steps": args.steps, "max_fraction": args.max_fraction,
              "max_images": args.max_images, "concepts": concept_names}
    csv = Path(args.csv or f"ablation-{run.run_id}.csv")
    with staged_file(csv) as partial:
        curves.assign(run_id=run.run_id, layers=",".join(layers)).to_csv(partial, index=False)
        importance.store_ablation(args.catalog, run.run_id, describer, probe, layers, len(units), config,
                                  curves, importance.checks_table(checks))
    print(importance.format_curves(curves))
    if checks:
        print()
        print(importance.format_checks(checks))
    print(f"\n{len(probe.labels)} images, {len(units)} units of {', '.join(layers)}; "
          f"curves in {csv} and {args.catalog}")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    with Catalog(args.catalog) as catalog:
        run = catalog.run(args.run)
        layers = importance.chosen_layers(catalog, run.run_id, _split(args.layers)) if args.layers else ()
        matches = audit_module.matching_units(
            catalog, args.query, [run.run_id], args.describer, args.min_similarity, layers, args.candidates
        )
    units = importance.as_mapping(list(zip(matches.layer, matches.unit.astype(int))))
    model = load_run_model(run, args.device)
    labelled = load_labelled_probe(Path(args.images or run.probe_root), model, args.max_images)
    evaluator = AblationEvaluator(model, labelled, list(units), args.batch_size)
    probe = evaluator.probe  # the images that decoded
    before, after = evaluator.accuracy({}), evaluator.accuracy(units)
    model.module.to("cpu")  # the saved model loads anywhere
    out = Path(args.out)
    with staged_file(out) as partial:
        torch.save(edit_payload(model, units, run.run_id, args.query), partial)
        with Catalog(args.catalog, writable=True) as catalog:
            catalog.store_edit({
                "edit_id": str(out.resolve()), "run_id": run.run_id, "query": args.query,
                "units": matches.key.tolist(), "path": str(out.resolve()), "images": str(probe.root.resolve()),
                "n_images": len(probe.labels), "accuracy_before": before, "accuracy_after": after,
            })
    print(f"switched off {len(matches)} unit(s) of run {run.run_id} matching {args.query!r}: "
          f"{', '.join(matches.key[:10])}{' ...' if len(matches) > 10 else ''}")
    print(f"top-1 accuracy on {len(probe.labels)} images of {probe.root}: "
          f"{100 * before:.1f}% before, {100 * after:.1f}% after ({100 * (after - before):+.1f} points)")
    print(f"wrote {args.out} (load it with milan_core.applications.editing.load_edited)")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", type=Path, default=CATALOG_PATH, help="catalog file (DuckDB)")
    parser.add_argument("--describer", default=None, help="whose descriptions to read (default: the most used)")


def _matching(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-similarity", type=float, default=DEFAULT_MIN_SIMILARITY,
                        help="cosine similarity a description needs to match by meaning")
    parser.add_argument("--candidates", action="store_true",
                        help="also match units whose losing candidate descriptions contain the query")


def _evaluation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default=None, help="run id (default: the newest run)")
    parser.add_argument("--images", default=None,
                        help="labelled images: ImageNet-named files or one folder per class "
                        "(default: the run's probe set)")
    parser.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    parser.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE)
    add_device_argument(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``audit``, ``ablate`` and ``edit`` to the command line."""
    audit = subparsers.add_parser("audit", help="count units whose descriptions match a query, per layer and run")
    _common(audit)
    audit.add_argument("--query", required=True, help='what to look for, e.g. "face"')
    audit.add_argument("--run", action="append", default=None, help="a run to audit (repeat to compare; default: all)")
    _matching(audit)
    audit.set_defaults(func=cmd_audit)

    ablate = subparsers.add_parser("ablate", help="accuracy as units are switched off, by description group")
    _common(ablate)
    _evaluation(ablate)
    ablate.add_argument("--order", default=DEFAULT_ORDERS,
                        help=f"comma-separated orders among {', '.join(importance.ORDERS)} "
                        "(random is always the reference)")
    ablate.add_argument("--layers", default=None, help="comma-separated layers (default: the run's deepest conv layer)")
    ablate.add_argument("--seeds", type=int, default=importance.MIN_SEEDS, help="random orders for the reference band")
    ablate.add_argument("--steps", type=int, default=10, help="evaluations along each order")
    ablate.add_argument("--max-fraction", type=float, default=1.0, help="stop after this fraction of the units")
    ablate.add_argument("--concepts", default=DEFAULT_CONCEPTS, help="WordNet nouns for the class-specific check")
    ablate.add_argument("--csv", default=None, help="curves as CSV (default: ablation-RUN.csv)")
    ablate.set_defaults(func=cmd_ablate)

    edit = subparsers.add_parser("edit", help="switch off units matching a query and save the edited model")
    _common(edit)
    _evaluation(edit)
    edit.add_argument("--query", required=True, help='units to switch off, e.g. "text"')
    edit.add_argument("--out", type=Path, required=True, help="edited model file (.pt)")
    edit.add_argument("--layers", default=None, help="comma-separated layers to edit (default: every layer of the run)")
    _matching(edit)
    edit.set_defaults(func=cmd_edit)
