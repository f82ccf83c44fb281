"""``describe`` and ``evaluate``: the command-line face of the description stage.

``describe_run`` is the whole stage for one run: read the run, let the describer propose, choose
with the shared PMI rule, embed, and write in one transaction. ``dissect --describe`` calls it too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from milan_core.catalog import Catalog
from milan_core.describe.base import DEFAULT_LAMBDA, select
from milan_core.describe.registry import DEFAULT_DESCRIBER, make_describer
from milan_core.describe.store import description_tables, load_run_view, write_descriptions


def describe_run(catalog_path: Path, run_id: str | None, describer: str | None, lam: float = DEFAULT_LAMBDA) -> str:
    """Describe every unit of a run (None: the newest) and replace its descriptions; returns the run id."""
    started = time.perf_counter()
    chosen = make_describer(describer)
    with Catalog(catalog_path) as catalog:
        run = load_run_view(catalog, run_id)
        dissect_seconds = catalog.run(run.run_id).seconds
    proposals = chosen.propose(run)
    described = select([u.unit_id for u in run.units], proposals, chosen.log_prior(proposals), lam)
    descriptions, candidates = description_tables(described, chosen.name)
    write_descriptions(catalog_path, run.run_id, chosen.name, descriptions, candidates)
    seconds = time.perf_counter() - started
    print(f"described {len(described)} units of run {run.run_id} with {chosen.name} in {seconds:.1f} s "
          f"(dissection took {dissect_seconds:.1f} s: ratio {seconds / max(dissect_seconds, 1e-9):.2f})")
    return run.run_id


def cmd_describe(args: argparse.Namespace) -> int:
    describe_run(args.catalog, args.run, args.describer, args.lam)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``describe`` and ``evaluate`` to the command line."""
    from milan_core.cli import DEFAULT_CATALOG

    describe = subparsers.add_parser("describe", help="describe every unit of a run (MILAN's PMI selection)")
    describe.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG, help="catalog file (DuckDB)")
    describe.add_argument("--run", default=None, help="run id (default: the newest run)")
    describe.add_argument("--describer", default=None,
                          help=f"NAME or NAME:OPTION (default {DEFAULT_DESCRIBER}; evidence:EYE picks the eye model)")
    describe.add_argument("--lam", type=float, default=DEFAULT_LAMBDA, help="λ of the PMI rule (MILAN: 0.2)")
    describe.set_defaults(func=cmd_describe)
