"""Audit: how many units of each layer (of one or more runs) have descriptions matching a query.

MILAN counted face-selective units in models trained with and without face-blurred images; this
is that count for any query and any runs in a catalog, side by side. Matching is
``milan_core.search`` (a keyword in the description or a losing candidate, or a description whose
MiniLM meaning is within the similarity threshold), so the audit, the app's search and ``edit``
agree on what "matches" means.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from milan_core.catalog import Catalog
from milan_core.errors import UserError
from milan_core.search import DEFAULT_MIN_SIMILARITY, count_matches, search_units


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
    min_similarity: float = DEFAULT_MIN_SIMILARITY, layers: Sequence[str] = (),
) -> pd.DataFrame:
    """Every unit of the runs whose description matches the query; a UserError when none does."""
    if not query.strip():
        raise UserError("--query is empty; give a word or phrase such as \"face\"")
    total = int(catalog.query("SELECT count(*) AS n FROM units").n.iloc[0])
    found = search_units(
        catalog, query, run_ids=run_ids, describer=describer, limit=total,
        min_similarity=min_similarity, layers=tuple(layers),
    )
    if found.empty:
        raise UserError(
            f"no unit of {', '.join(run_ids)} has a description matching {query!r} (keyword, or "
            f"cosine similarity >= {min_similarity:g}); try another --query or a lower --min-similarity"
        )
    return found


def audit(
    catalog: Catalog, query: str, run_ids: Sequence[str] | None = None, describer: str | None = None,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> Audit:
    runs = resolve_runs(catalog, run_ids)
    units = matching_units(catalog, query, runs, describer, min_similarity)
    counts = count_matches(catalog, query, run_ids=runs, describer=describer, min_similarity=min_similarity)
    return Audit(query, runs, describer, min_similarity, counts, units)


def side_by_side(counts: pd.DataFrame) -> pd.DataFrame:
    """Layers as rows, runs as columns, cells 'matches/units (share%)'."""
    cells = counts.assign(cell=[f"{m}/{u} ({100 * s:.1f}%)" for m, u, s in zip(counts.matches, counts.units, counts.share)])
    order = cells.sort_values("layer_index").layer.drop_duplicates()
    table = cells.pivot(index="layer", columns="run_id", values="cell").reindex(order).fillna("-")
    table.columns.name = None
    return table


def format_audit(result: Audit) -> str:
    """The printed report: threshold, the per-layer table, then the matching units."""
    lines = [
        f"query {result.query!r}: {len(result.units)} matching unit(s); match = keyword in the description "
        f"or a candidate, or cosine similarity >= {result.min_similarity:g}",
        "",
        side_by_side(result.counts).to_string(),
        "",
    ]
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
    with Catalog(catalog_path, writable=True) as catalog, catalog.transaction() as con:
        con.execute("DELETE FROM audit_units WHERE audit_id = ?", [key])
        con.execute("DELETE FROM audits WHERE audit_id = ?", [key])
        con.execute(
            "INSERT INTO audits VALUES (?, ?, ?, ?, ?, now())",
            [key, result.query, result.run_ids, result.describer, result.min_similarity],
        )
        con.register("new_audit_units", result.units[["unit_id", "rank_score", "similarity", "keyword_hit"]])
        con.execute(
            "INSERT INTO audit_units SELECT ?, unit_id, rank_score, similarity, keyword_hit FROM new_audit_units",
            [key],
        )
        con.unregister("new_audit_units")
    return key
