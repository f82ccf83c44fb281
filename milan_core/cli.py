"""The command line: ``python -m milan_core COMMAND``.

Each command is a small function from parsed arguments to an exit code. Mistakes a person can fix
arrive as ``UserError`` and leave as one line on stderr with exit code 2; Ctrl-C leaves the catalog
untouched and exits 130.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from milan_core import config
from milan_core.applications import command as application_commands
from milan_core.catalog import RunWrite
from milan_core.describe import command as describe_commands
from milan_core.errors import UserError
from milan_core.runtime import add_device_argument


def _human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GB"


def cmd_dissect(args: argparse.Namespace) -> int:
    from milan_core.dissect import dissect

    dissection = config.DissectConfig(
        model=args.model, weights=args.weights, images=args.images,
        layers=tuple(name.strip() for name in args.layers.split(",") if name.strip()),
        k=args.k, quantile=args.quantile, batch_size=args.batch_size, workers=args.workers,
        max_images=args.max_images, run_id=args.run_id, precision=args.precision,
    )
    if args.checkpoint_every < 0:
        raise UserError("--checkpoint-every must be 0 (after every batch) or more seconds")
    if args.max_image_pixels is not None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = args.max_image_pixels  # decoding workers are forked after this line
    if args.shards:
        from milan_core.sharding import dissect_sharded

        summary = dissect_sharded(dissection, args.out, args.shards, args.ray_address, backend=args.backend,
                                  device=args.device)
    elif args.ray_address:
        raise UserError("--ray-address needs --shards N (the number of Ray tasks to split the images into)")
    else:
        summary = dissect(dissection, args.out, args.checkpoint_every, backend=args.backend, device=args.device)
    print(f"run {summary.run_id}: read {summary.n_images} images in {summary.seconds:.1f} s, "
          f"skipped {len(summary.skipped)}")
    if summary.skipped:
        shown = ", ".join(summary.skipped[:5]) + (" ..." if len(summary.skipped) > 5 else "")
        print(f"warning: skipped {len(summary.skipped)} unreadable file(s): {shown}", file=sys.stderr)
    print(f"wrote {summary.n_units} units to {args.out} ({_human_bytes(summary.catalog_bytes)})")
    if summary.written.kept:
        print(f"run {summary.run_id} had the same exemplars before: its descriptions and results are kept")
    dropped = dropped_message(summary.written, args.out, summary.run_id)
    if dropped:
        print(dropped, file=sys.stderr)
    if args.describe:
        describe_commands.describe_run(args.out, summary.run_id, args.describer, device=args.device)
    return 0


def dropped_message(written: RunWrite, catalog: Path, run_id: str) -> str | None:
    """What replacing a run with changed exemplars threw away, and the command that brings the
    descriptions back (None when nothing was lost: a new run, or the same exemplars again)."""
    if not written.dropped:
        return None
    rows = ", ".join(f"{n} {table}" for table, n in written.dropped.items())
    again = "; ".join(
        f"python -m milan_core describe --catalog {catalog} --run {run_id} --describer {name}"
        for name in written.describers
    )
    how = f"; describe it again with: {again}" if again else ""
    return f"note: the exemplars of run {run_id} changed, so its earlier results were dropped ({rows}){how}"


def cmd_migrate(args: argparse.Namespace) -> int:
    from milan_core.catalog.migrate import migrate

    done = migrate(args.catalog)
    print(f"{args.catalog}: schema {done.before} -> {done.after}" if done.before != done.after else
          f"{args.catalog} already has schema {done.after}")
    for run_id, root in done.unresolved.items():
        print(f"note: run {run_id} read its images from {root!r}, which is not there from this directory; "
              "run migrate again from the directory it was dissected in to store full paths", file=sys.stderr)
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    import torch

    from milan_core.hooks import list_layers
    from milan_core.models import load_model

    loaded = load_model(args.model, Path(args.weights) if args.weights else None)
    size = loaded.preprocessing.input_size
    print(f"{'layer':40s} {'kind':7s} output shape (input {size}x{size})")
    for info in list_layers(loaded.module, torch.zeros(1, 3, size, size)):
        print(f"{info.name:40s} {info.kind:7s} {tuple(info.shape)}")
    return 0


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=config.DEFAULT_MODEL,
                        help="efficientnet-lite0/1/2, a torchvision or timm name, or package.module:callable")
    parser.add_argument("--weights", default=None, help="a state-dict file for a torchvision/timm architecture")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m milan_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    dissect = sub.add_parser("dissect", help="find every unit's top images, threshold and masks")
    _add_model_arguments(dissect)
    dissect.add_argument("--images", default=None, help="folder of probe images (default: the embedded sample)")
    dissect.add_argument("--layers", default=",".join(config.DEFAULT_LAYERS), help="comma-separated layer names")
    dissect.add_argument("--out", type=Path, default=config.CATALOG_PATH, help="catalog file (DuckDB)")
    dissect.add_argument("--k", type=int, default=config.K, help="exemplars kept per unit")
    dissect.add_argument("--quantile", type=float, default=config.QUANTILE,
                         help="threshold quantile (0.995: Network Dissection)")
    dissect.add_argument("--batch-size", type=int, default=config.BATCH_SIZE)
    dissect.add_argument("--workers", type=int, default=config.WORKERS, help="image-decoding processes")
    dissect.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    dissect.add_argument("--run-id", default=None, help="name of the run (default: model and parameter hash)")
    dissect.add_argument("--checkpoint-every", type=float, default=config.CHECKPOINT_EVERY, metavar="SECONDS",
                         help="save the job's state this often, so a rerun after an interruption resumes")
    dissect.add_argument("--max-image-pixels", type=int, default=None, metavar="N",
                         help="read images up to N pixels (Pillow refuses over 2 x 89,478,485 as a decompression bomb)")
    dissect.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime"),
                         help="what runs the model: auto = ONNX Runtime on a CPU when the model exports, else torch")
    add_device_argument(dissect)
    dissect.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                         help="of the model's forward pass (not fp32: torch autocast; a separate run id)")
    dissect.add_argument("--shards", type=int, default=0, metavar="N",
                         help="split the images into N Ray tasks (a local Ray of this machine's cores unless "
                              "--ray-address); does not change the run id")
    dissect.add_argument("--ray-address", default=None, metavar="ADDRESS",
                         help="join this Ray cluster (host:port of `ray start --head`, or auto) for --shards")
    dissect.add_argument("--describe", action="store_true", help="also describe every unit")
    dissect.add_argument("--describer", default=None, help="describer for --describe")
    dissect.set_defaults(func=cmd_dissect)

    layers = sub.add_parser("layers", help="list a model's hookable layers and their output shapes")
    _add_model_arguments(layers)
    layers.set_defaults(func=cmd_layers)

    migrate = sub.add_parser("migrate", help="bring a catalog of an older schema to this code's")
    migrate.add_argument("--catalog", type=Path, default=config.CATALOG_PATH, help="catalog file (DuckDB)")
    migrate.set_defaults(func=cmd_migrate)

    describe_commands.register(sub)
    application_commands.register(sub)
    _add_trust_flag(sub)
    return parser


# Commands that rebuild the model a catalog's run recorded (an edit file's, for load_edited).
RELOADING_COMMANDS = ("describe", "evaluate", "ablate", "edit")


def _add_trust_flag(sub: argparse._SubParsersAction) -> None:
    """``--trust-model-code`` on every command (or sub-command) that reloads a recorded model."""
    for name in RELOADING_COMMANDS:
        parser = sub.choices.get(name)
        if parser is None:
            continue
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for leaf in [p for action in nested for p in action.choices.values()] or [parser]:
            leaf.add_argument("--trust-model-code", action="store_true",
                              help="allow rebuilding a package.module:callable model named in the catalog "
                                   "(imports and runs that code: only for catalogs you trust)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    import duckdb

    from milan_core.models import trusting_model_code

    # A model typed on this command line is the user's own choice; one named in a file is not.
    typed = [args.model] if getattr(args, "model", None) else []
    try:
        with trusting_model_code(None if getattr(args, "trust_model_code", False) else typed):
            return int(args.func(args))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except duckdb.IOException as error:  # a catalog damaged on disk shows up in whichever query reads the block
        if "Corrupt database file" not in str(error):
            raise
        print(f"error: the catalog file is damaged ({str(error).splitlines()[0]}); restore it from a copy",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the catalog was not changed; run the same command again "
              "(a dissection goes on from its last checkpoint)", file=sys.stderr)
        return 130
