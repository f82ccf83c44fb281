"""Importance by ablation: which units matter for accuracy, read through their descriptions.

Units of the chosen layers are switched off in an order — a description group (``concepts``),
description specificity (most specific first), or random — and top-1 accuracy on a labelled probe
set is measured after each step. Random orders over at least five seeds give the reference band.
The class-specific check asks whether switching off the units that mention concept X hurts X's
images more than the others, and more than as many random units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from milan_core.applications import concepts
from milan_core.applications.evaluation import AblationEvaluator, LabelledProbe
from milan_core.catalog import Catalog
from milan_core.errors import UserError

ORDERS: tuple[str, ...] = (*concepts.GROUPS, "specificity", "random")
RANDOM = "random"
MIN_SEEDS = 5

UnitKey = tuple[str, int]


def chosen_layers(catalog: Catalog, run_id: str, layers: Sequence[str] | None) -> list[str]:
    """The layers to ablate: those asked for, else the run's deepest convolutional layer.

    The deepest conv layer is the default because it is where descriptions are most semantic and
    the cached forward pass makes each evaluation cheap; logit layers (flat) are never a default.
    """
    table = catalog.layers(run_id)
    if layers:
        unknown = [layer for layer in layers if layer not in set(table.layer)]
        if unknown:
            raise UserError(
                f"run {run_id!r} has no layer {', '.join(unknown)}; it has: {', '.join(table.layer)}"
            )
        return list(layers)
    conv = table[table.kind == "conv"].layer.tolist()
    return [conv[-1] if conv else table.layer.iloc[-1]]


def pick_describer(catalog: Catalog, run_id: str, describer: str | None) -> str:
    """The describer asked for, else the one that described most of the run's units."""
    counts = catalog.describer_counts(run_id)
    if counts.empty:
        raise UserError(
            f"run {run_id!r} has no descriptions yet; describe it first "
            "(python -m milan_core dissect --describe, or the describe command)"
        )
    if describer is None:
        return str(counts.describer.iloc[0])
    if describer not in set(counts.describer):
        raise UserError(f"run {run_id!r} has no descriptions by {describer!r}; it has: {', '.join(counts.describer)}")
    return describer


def layer_units(catalog: Catalog, run_id: str, layers: Sequence[str], describer: str) -> pd.DataFrame:
    """Every unit of the layers (layer, unit, key, description — None where undescribed)."""
    return catalog.layer_units(run_id, list(layers), describer)


def unit_order(units: pd.DataFrame, order: str, seed: int = 0) -> list[UnitKey]:
    """The units to switch off, first to last, for one order."""
    if order == RANDOM:
        picked = units.iloc[np.random.default_rng(seed).permutation(len(units))]
        return list(zip(picked.layer, picked.unit.astype(int)))
    described = units.dropna(subset=["description"])
    if order in concepts.GROUPS:
        described = described[[order in concepts.description_groups(d) for d in described.description]]
    elif order != "specificity":
        raise UserError(f"unknown order {order!r}; choose from: {', '.join(ORDERS)}")
    ranked = described.assign(depth=[concepts.specificity(d) for d in described.description])
    ranked = ranked.sort_values(["depth", "layer", "unit"], ascending=[False, True, True], kind="stable")
    return list(zip(ranked.layer, ranked.unit.astype(int)))


def named_orders(units: pd.DataFrame, orders: Sequence[str]) -> dict[str, list[UnitKey]]:
    """The non-random orders that have units; a UserError when orders were asked and none has any."""
    asked = [o for o in dict.fromkeys(orders) if o != RANDOM]
    named = {o: unit_order(units, o) for o in asked}
    if asked and not any(named.values()):
        raise UserError(
            f"no described unit of these layers falls in order(s) {', '.join(asked)}; "
            f"try another --order (choose from: {', '.join(ORDERS)})"
        )
    return {o: keys for o, keys in named.items() if keys}


def as_mapping(keys: Sequence[UnitKey]) -> dict[str, list[int]]:
    mapping: dict[str, list[int]] = {}
    for layer, unit in keys:
        mapping.setdefault(layer, []).append(int(unit))
    return mapping


def step_counts(length: int, limit: int, steps: int) -> list[int]:
    """Evenly spaced numbers of ablated units from 0 to min(length, limit)."""
    top = min(length, limit)
    return sorted({int(round(x)) for x in np.linspace(0, top, steps + 1)})


def ablation_curve(
    evaluator: AblationEvaluator, order: Sequence[UnitKey], counts: Sequence[int], baseline: float
) -> list[float]:
    """Accuracy with the first ``n`` units of the order switched off, for each n in counts."""
    return [baseline if n == 0 else evaluator.accuracy(as_mapping(order[:n])) for n in counts]


def importance_curves(
    evaluator: AblationEvaluator, units: pd.DataFrame, orders: Sequence[str], seeds: int = MIN_SEEDS,
    steps: int = 10, max_fraction: float = 1.0,
) -> pd.DataFrame:
    """Long table (curve, seed, step, n_ablated, fraction, accuracy) for the orders plus random.

    Random orders are evaluated at an even grid up to the longest named order (or ``max_fraction``
    of the units) and at each named order's end, so every curve has a reference at its last point.
    """
    if seeds < MIN_SEEDS:
        raise UserError(f"--seeds must be at least {MIN_SEEDS} for a reference band")
    total = len(units)
    limit = max(1, int(round(max_fraction * total)))
    named = named_orders(units, orders)
    named_counts = {o: step_counts(len(keys), limit, steps) for o, keys in named.items()}
    reach = max((c[-1] for c in named_counts.values()), default=limit)
    random_counts = sorted(set(step_counts(total, reach, steps)).union(c[-1] for c in named_counts.values()))
    jobs = [(o, 0, keys, named_counts[o]) for o, keys in named.items()]
    jobs += [(RANDOM, s, unit_order(units, RANDOM, s), random_counts) for s in range(seeds)]
    baseline = evaluator.accuracy({})
    rows = []
    for name, seed, keys, counts in tqdm(jobs, desc="ablation curves", unit="curve"):
        for step, (n, acc) in enumerate(zip(counts, ablation_curve(evaluator, keys, counts, baseline))):
            rows.append((name, seed, step, n, n / total, acc))
    return pd.DataFrame(rows, columns=["curve", "seed", "step", "n_ablated", "fraction", "accuracy"])


def summarise_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per curve and step: accuracy (mean over seeds), its spread (sd, 0 for one seed), min, max."""
    grouped = curves.groupby(["curve", "n_ablated", "fraction"], as_index=False).accuracy
    summary = grouped.agg(["mean", "std", "min", "max"]).rename(columns={"mean": "accuracy", "std": "sd"})
    return summary.fillna({"sd": 0.0}).sort_values(["curve", "n_ablated"], ignore_index=True)


def format_curves(curves: pd.DataFrame) -> str:
    """Accuracy (%) after each step, random as mean ± sd over seeds."""
    summary = summarise_curves(curves)
    lines = [f"{'order':12s} {'ablated':>7s} {'fraction':>8s} {'top-1 %':>14s}"]
    for row in summary.itertuples():
        spread = f" ± {100 * row.sd:4.1f}" if row.curve == RANDOM else ""
        lines.append(f"{row.curve:12s} {row.n_ablated:7d} {row.fraction:8.3f} {100 * row.accuracy:6.1f}{spread}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ClassCheck:
    """Accuracy on a concept's images and on the others, before and after ablating its units."""

    concept: str
    n_units: int
    n_concept_images: int
    n_other_images: int
    concept_before: float
    concept_after: float
    other_before: float
    other_after: float
    random_concept_after: float  # mean over seeds, same number of random units of the layers
    random_concept_sd: float
    random_other_after: float


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def class_check(
    evaluator: AblationEvaluator, units: pd.DataFrame, concept: str, seeds: int = MIN_SEEDS
) -> ClassCheck:
    """The class-specific check for one concept (see the module docstring)."""
    synset = concepts.concept_synset(concept)
    probe: LabelledProbe = evaluator.probe
    described = units.dropna(subset=["description"])
    hits = described[[concepts.mentions(d, synset) for d in described.description]]
    keys = list(zip(hits.layer, hits.unit.astype(int)))
    is_concept = np.array([concepts.label_is(label, synset) for label in probe.labels])
    before = evaluator.correct({})
    after = evaluator.correct(as_mapping(keys)) if keys else before
    random_after = np.stack([
        evaluator.correct(as_mapping(unit_order(units, RANDOM, seed)[: len(keys)])) if keys else before
        for seed in range(seeds)
    ])
    random_concept = np.array([_mean(r[is_concept]) for r in random_after])
    return ClassCheck(
        concept=concept, n_units=len(keys), n_concept_images=int(is_concept.sum()),
        n_other_images=int((~is_concept).sum()),
        concept_before=_mean(before[is_concept]), concept_after=_mean(after[is_concept]),
        other_before=_mean(before[~is_concept]), other_after=_mean(after[~is_concept]),
        random_concept_after=float(random_concept.mean()), random_concept_sd=float(random_concept.std()),
        random_other_after=float(np.mean([_mean(r[~is_concept]) for r in random_after])),
    )


def checks_table(checks: Sequence[ClassCheck]) -> pd.DataFrame:
    return pd.DataFrame([asdict(c) for c in checks])


def format_checks(checks: Sequence[ClassCheck]) -> str:
    """The class-specific check as a printable table of accuracy drops (points)."""
    header = (f"{'concept':12s} {'units':>5s} {'images':>6s} {'drop on X':>9s} {'drop others':>11s} "
              f"{'random drop on X':>17s}")
    lines = [header]
    for c in checks:
        if not c.n_units or not c.n_concept_images:
            why = "no unit's description mentions it" if not c.n_units else "no image of it in the probe set"
            lines.append(f"{c.concept:12s} {c.n_units:5d} {c.n_concept_images:6d}   - ({why})")
            continue
        drop_x = 100 * (c.concept_before - c.concept_after)
        drop_o = 100 * (c.other_before - c.other_after)
        drop_r = 100 * (c.concept_before - c.random_concept_after)
        lines.append(
            f"{c.concept:12s} {c.n_units:5d} {c.n_concept_images:6d} {drop_x:9.1f} {drop_o:11.1f} "
            f"{drop_r:9.1f} ± {100 * c.random_concept_sd:4.1f}"
        )
    return "\n".join(lines)


def ablation_id(run_id: str, images: Path, layers: Sequence[str]) -> str:
    """Rerunning the same run, probe set and layers replaces the stored result."""
    return f"{run_id}|{Path(images).resolve()}|{','.join(layers)}"


def store_ablation(
    catalog_path: Path, run_id: str, describer: str, probe: LabelledProbe, layers: Sequence[str],
    n_units: int, config: dict[str, object], curves: pd.DataFrame, checks: pd.DataFrame,
) -> str:
    """Write one ablation study (replacing an earlier one with the same id) in one transaction."""
    key = ablation_id(run_id, probe.root, layers)
    ablation = {
        "ablation_id": key, "run_id": run_id, "describer": describer, "images": str(Path(probe.root).resolve()),
        "n_images": len(probe.labels), "layers": list(layers), "n_units": n_units, "config": config,
    }
    with Catalog(catalog_path, writable=True) as catalog:
        catalog.store_ablation(ablation, curves, checks)
    return key
