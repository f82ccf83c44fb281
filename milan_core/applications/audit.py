"""Audit: how many units of each layer (of one or more runs) have descriptions matching a query.

MILAN counted face-selective units in models trained with and without face-blurred images; this
is that count for any query and any runs in a catalog, side by side. Matching is
``milan_core.catalog.search`` (a query word in the description, or a description whose MiniLM meaning is
within the similarity threshold), so the audit, its app page and ``edit`` agree on what "matches"
means; the search's hits in losing candidates count only when asked for (``--candidates``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from milan_core.catalog import Catalog
from milan_core.catalog.search import DEFAULT_MIN_SIMILARITY, search_units
from milan_core.errors import UserError


@dataclass(frozen=True)
class Audit:
    """The per-layer counts (run, layer, matches, units, share) and every matching unit."""

    query: str
    run_ids: list[str]
    describer: str | None
    min_similarity: float
    counts: pd.DataFrame
    units: pd.DataFrame


def resolve_runs(catalog: Catalog, run_ids: Sequence[str] | None) -> list[str]:
    """The runs asked for (each must exist), else every run in the catalog."""
    if run_ids:
        return [catalog.run(run_id).run_id for run_id in dict.fromkeys(run_ids)]
    catalog.run()  # a UserError when the catalog has no runs
    return catalog.runs().run_id.tolist()


def matching_units(
    catalog: Catalog, query: str, run_ids: Sequence[str], describer: str | None = None,
    min_similarity: float = DEFAULT_MIN_SIMILARITY, layers: Sequence[str] = (), candidates: bool = False,
    required: bool = True,
) -> pd.DataFrame:
    """Every unit of the runs whose description matches the query; a UserError when none does,
    unless not ``required`` (an audit: zero units of a kind is an answer, not a mistake).

    The same rule as the search page's (``search_units``), so both give the same count: a query
    word in a unit's losing candidates counts only with ``candidates=True``.
    """
    if not query.strip():
        raise UserError("--query is empty; give a word or phrase such as \"face\"")
    total = catalog.unit_count()
    found = search_units(
        catalog, query, run_ids=run_ids, describer=describer, limit=total,
        min_similarity=min_similarity, layers=tuple(layers), candidates=candidates,
    )
    if found.empty and required:
        raise UserError(
            f"no unit of {', '.join(run_ids)} has a description matching {query!r} (keyword, or "
            f"cosine similarity >= {min_similarity:g}); try another --query or a lower --min-similarity"
        )
    return found


def layer_counts(catalog: Catalog, units: pd.DataFrame, run_ids: Sequence[str]) -> pd.DataFrame:
    """run_id, layer, layer_index, matches, units, share for every layer of the runs."""
    layers = catalog.layers_of_runs(list(run_ids)).drop(columns="kind")
    matches = units.groupby(["run_id", "layer"]).size().rename("matches").reset_index()
    counts = layers.merge(matches, on=["run_id", "layer"], how="left").fillna({"matches": 0})
    counts["matches"] = counts.matches.astype(int)
    return counts.assign(share=counts.matches / counts.units.clip(lower=1))


def audit(
    catalog: Catalog, query: str, run_ids: Sequence[str] | None = None, describer: str | None = None,
    min_similarity: float = DEFAULT_MIN_SIMILARITY, candidates: bool = False,
) -> Audit:
    runs = resolve_runs(catalog, run_ids)
    units = matching_units(catalog, query, runs, describer, min_similarity, candidates=candidates, required=False)
    return Audit(query, runs, describer, min_similarity, layer_counts(catalog, units, runs), units)


def side_by_side(counts: pd.DataFrame) -> pd.DataFrame:
    """Layers as rows, runs as columns, cells 'matches/units (share%)'."""
    cells = counts.assign(
        cell=[f"{m}/{u} ({100 * s:.1f}%)" for m, u, s in zip(counts.matches, counts.units, counts.share)]
    )
    order = cells.sort_values("layer_index").layer.drop_duplicates()
    table = cells.pivot(index="layer", columns="run_id", values="cell").reindex(order).fillna("-")
    table.columns.name = None
    return table


def format_audit(result: Audit) -> str:
    """The printed report: threshold, the per-layer table, then the matching units."""
    lines = [
        f"query {result.query!r}: {len(result.units)} matching unit(s); match = a query word in the "
        f"description, or cosine similarity >= {result.min_similarity:g}",
        "",
        side_by_side(result.counts).to_string(),
        "",
    ]
    if result.units.empty:
        lines.append(f"no unit has a description matching {result.query!r}")
    else:
        shown = result.units[["run_id", "key", "rank_score", "description", "reason"]]
        lines.append(shown.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    return "\n".join(lines)


def audit_id(result: Audit) -> str:
    """Same query, runs, describer and threshold: same id, so a rerun replaces the stored audit."""
    key = json.dumps([result.query, result.run_ids, result.describer, result.min_similarity])
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def store_audit(catalog_path: Path, result: Audit) -> str:
    """Write the audit and its units in one transaction."""
    key = audit_id(result)
    with Catalog(catalog_path, writable=True) as catalog:
        catalog.store_audit(key, result.query, result.run_ids, result.describer, result.min_similarity,
                            result.units[["unit_id", "rank_score", "similarity", "keyword_hit"]])
    return key
