"""Search the catalog's units by what their descriptions say: keywords and meaning, in one ranking.

A query like "face" should find "human faces" (the word), "face close-ups" among a unit's
candidates (the word, in a description that lost), and "portraits of people" (the meaning). So a
unit's rank mixes three signals, each computed inside DuckDB with parameterised SQL:

* keyword hits in the chosen description: each query word must start a word of the text
  (``face`` matches "faces", not "surface"), matched with a case-insensitive RE2 pattern;
* keyword hits in the unit's other candidates (``candidates.text``, the winner excluded), only
  when asked (``candidates=True``);
* cosine similarity between the query's MiniLM vector (``milan_core.embedding.embed``) and the
  stored description vector (unit vectors, so the inner product is the cosine);
* keyword hits in people's own labels for the unit (``milan_core.catalog.notes``, the file beside
  the catalog), unless ``notes=False``: a label someone wrote is found like a description.

Descriptions and candidates repeat across units ("dogs" may describe hundreds), so patterns and
cosines are computed once per distinct text, on a search index read from the file once per catalog
version and process into an in-memory DuckDB database (distinct descriptions with FLOAT[384]
vectors scored by ``array_inner_product``; the candidates that lost). A query's matching texts and
candidate hits then join the catalog's units and filters as two small tables. Reading every stored
vector again for each query was the slowest part of a search on 100,000 units (``bench/bench_app.py``).

Why not DuckDB's full-text-search extension: ``duckdb-ext-fts`` does load offline with the pinned
DuckDB, but its index is a set of tables that must be created in the searched database, and the app
and the audit command open the catalog read-only; word-start patterns over the distinct texts do
the keyword part without an index.

Keyword matches are listed first, then the "related" ones (meaning only), so a word a person typed
is never buried under look-alikes; ``count_matches`` and the ``audit`` command apply the same rule,
so a query and filters give the same count everywhere.

``search_units`` returns one page of the ranking (``limit``/``offset``) with a ``total`` column, so
no caller ever loads every unit; ``count_matches`` counts matches per run and layer.
"""

from __future__ import annotations

import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from milan_core.catalog.connection import Catalog
from milan_core.catalog.notes import Notes
from milan_core.config import EMBEDDING_DIM
from milan_core.errors import UserError

#: Semantic matches need at least this cosine similarity. MiniLM puts short phrases unrelated to
#: a one-word query at 0.3-0.45 ("face" vs "bikini" 0.43, "slug" 0.43, "tank" 0.41, "green grass"
#: 0.19), and close ones above 0.5 ("face" vs "head" 0.59, "mask" 0.54, "human faces" 0.67; "dog"
#: vs "puppy" 0.80, "hound" 0.65). At 0.4 "face" returned bikinis, tanks and slugs; meaning matches
#: are listed after the keyword matches, under "related", with their similarity.
DEFAULT_MIN_SIMILARITY = 0.5

#: How much a keyword hit adds to the ranking score (similarity is 0..1): a description that says
#: the word outranks one that only means something close; a losing candidate that says it adds less.
DESCRIPTION_HIT_WEIGHT = 0.5
CANDIDATE_HIT_WEIGHT = 0.2
#: A person's own label that says the word counts like a description that says it.
NOTE_HIT_WEIGHT = 0.5

#: Words too common to count as keyword hits on their own.
STOP_WORDS = frozenset(
    "a an and are as at be by for from in is it of on or the to with without".split()
)

#: Longest query kept (MiniLM reads 256 word pieces at most) and most words matched as keywords.
MAX_QUERY_CHARS = 1000
MAX_TERMS = 8
MAX_TERM_CHARS = 40

#: Best segmentation IoU of a description, from its evidence JSON (``best_iou``, else ``iou``).
BEST_IOU_SQL = (
    "coalesce(TRY_CAST(json_extract_string(d.evidence, '$.best_iou') AS DOUBLE), "
    "TRY_CAST(json_extract_string(d.evidence, '$.iou') AS DOUBLE))"
)


@dataclass(frozen=True)
class UnitFilters:
    """Narrowing a search: every field left at its default keeps all units."""

    layers: tuple[str, ...] = ()
    evidence_types: tuple[str, ...] = ()
    min_confidence: float | None = None
    max_significance: float | None = None  # keep labels at most this likely by chance (p-value)
    min_score: float | None = None
    min_iou: float | None = None
    min_act_mean: float | None = None
    max_act_mean: float | None = None
    min_act_max: float | None = None

    @classmethod
    def from_keywords(cls, filters: dict[str, Any]) -> UnitFilters:
        """Filters from keyword arguments; an unknown name is a UserError naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(filters) - known)
        if unknown:
            raise UserError(f"unknown search filter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(filters)
        for name in ("layers", "evidence_types"):
            if isinstance(values.get(name), str):
                values[name] = (values[name],)
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


def query_terms(query: str) -> list[str]:
    """The words of a query that count as keywords: lower case, no stop words, at most MAX_TERMS."""
    words = re.findall(r"\w+", query[:MAX_QUERY_CHARS].lower())
    terms = [w[:MAX_TERM_CHARS] for w in words if w not in STOP_WORDS]
    return list(dict.fromkeys(terms))[:MAX_TERMS]


def term_patterns(terms: Sequence[str]) -> list[str]:
    """RE2 patterns matching each term at the start of a word, ignoring case."""
    return [r"(?i)\b" + re.escape(term) for term in terms]


_meaning_loaded = threading.Event()


def embedding_model_loaded() -> bool:
    """Whether this process has MiniLM in memory already (a describe or a test may have loaded it);
    never imports it (that imports torch, seconds on a busy machine)."""
    model = getattr(sys.modules.get("milan_core.embedding"), "_model", None)  # None while it is being imported
    return model is not None and model.cache_info().currsize > 0


_meaning_lock = threading.Lock()


def load_meaning() -> None:
    """Load MiniLM (once per process; seconds: importing transformers, reading the weights)."""
    query_vector("face")
    _meaning_loaded.set()


def meaning_loaded() -> bool:
    """Whether queries can be embedded now, without starting anything."""
    return _meaning_loaded.is_set() or embedding_model_loaded()


def meaning_ready() -> bool:
    """Whether queries can be embedded now; if not, start loading MiniLM in the background (once).

    A fresh app draws its keyword matches at once with ``semantic=False`` and lets the meaning
    matches join when this says the model is there.
    """
    if meaning_loaded():
        return True
    with _meaning_lock:
        if not any(t.name == "milan-load-minilm" for t in threading.enumerate()):
            threading.Thread(target=load_meaning, name="milan-load-minilm", daemon=True).start()
    return False


@lru_cache(maxsize=256)
def query_vector(query: str) -> tuple[float, ...]:
    """The query's MiniLM vector (cached: a person pages through the same query's results)."""
    from milan_core.embedding import embed

    return tuple(float(x) for x in embed([query[:MAX_QUERY_CHARS]])[0])


def default_describer(catalog: Catalog) -> str | None:
    """The describer with the most descriptions in the catalog (None when nothing is described)."""
    row = catalog.con.execute(
        "SELECT describer FROM descriptions GROUP BY describer ORDER BY count(*) DESC, describer LIMIT 1"
    ).fetchone()
    return row[0] if row else None


def describers(catalog: Catalog) -> list[str]:
    """Every describer that has descriptions in the catalog, most used first."""
    rows = catalog.con.execute(
        "SELECT describer FROM descriptions GROUP BY describer ORDER BY count(*) DESC, describer"
    ).fetchall()
    return [r[0] for r in rows]


#: How many catalog versions' search indexes one process keeps in memory.
INDEX_CACHE_SIZE = 4


def hits_sql(column: str, n_terms: int) -> str:
    """SQL counting how many query words (``$pattern_0`` ...) start a word of ``column``: one
    constant pattern per word, so DuckDB compiles each regular expression once, not once per row."""
    return " + ".join(f"regexp_matches({column}, $pattern_{i})::INTEGER" for i in range(n_terms)) or "0"


def text_matches_sql(n_terms: int) -> str:
    """The description texts that match the query, with their keyword hits and cosine similarity."""
    return f"""
        SELECT text, hits, similarity FROM (
            SELECT text, {hits_sql("text", n_terms)} AS hits,
                   coalesce(array_inner_product(embedding, $vector::FLOAT[{EMBEDDING_DIM}]), 0.0) AS similarity
            FROM texts
        ) WHERE hits > 0 OR similarity >= $min_similarity
    """


def candidate_hits_sql(n_terms: int) -> str:
    """Per unit, its best keyword hits among the candidates that lost, each distinct text tested once."""
    return f"""
        WITH hit_texts AS MATERIALIZED (
            SELECT text, hits FROM (SELECT text, {hits_sql("text", n_terms)} AS hits FROM candidate_texts)
            WHERE hits > 0
        )
        SELECT r.unit_id, max(h.hits) AS hits, arg_max(r.text, h.hits) AS text
        FROM losing_candidates r JOIN hit_texts h ON h.text = r.text GROUP BY r.unit_id
    """


def note_hits_sql(n_terms: int) -> str:
    """Per labelled unit (run and ``layer:unit``), how many query words its people's labels say."""
    return f"""
        SELECT run_id, unit_key, hits, labels AS text FROM (
            SELECT run_id, unit_key, labels, {hits_sql("labels", n_terms)} AS hits FROM unit_labels
        ) WHERE hits > 0
    """


#: The search index of one catalog version and describer, in an in-memory DuckDB database:
#: texts(text, embedding FLOAT[384]) has each distinct description once with its stored vector;
#: losing_candidates(unit_id, text) the candidates that did not win; candidate_texts their
#: distinct texts. Descriptions repeat across units ("dogs" may describe hundreds), so patterns and
#: cosines run once per distinct text, and no query reads 100,000 stored vectors from the file again.
INDEX_SOURCES = {
    "texts": (
        "SELECT description AS text, embedding FROM descriptions WHERE rowid IN "
        "(SELECT min(rowid) FROM descriptions WHERE describer = ? GROUP BY description)"
    ),
    "losing_candidates": (
        "SELECT k.unit_id, k.text FROM candidates k "
        "JOIN descriptions w ON w.unit_id = k.unit_id AND w.describer = k.describer "
        "WHERE k.describer = ? AND k.text <> w.description"
    ),
}

_indexes: OrderedDict[tuple[str, int, str | None], duckdb.DuckDBPyConnection] = OrderedDict()
_indexes_lock = threading.Lock()


def _build_index(catalog: Catalog, describer: str | None) -> duckdb.DuckDBPyConnection:
    """Read the index's rows from the catalog once and lay them out in memory (see INDEX_SOURCES)."""
    memory = duckdb.connect(":memory:")
    for table, sql in INDEX_SOURCES.items():
        memory.register("stored", catalog.con.execute(sql, [describer]).fetch_arrow_table())
        memory.execute(f"CREATE TABLE {table} AS SELECT * FROM stored")
        memory.unregister("stored")
    memory.execute(
        f"ALTER TABLE texts ALTER embedding TYPE FLOAT[{EMBEDDING_DIM}] USING "
        f"CASE WHEN len(embedding) = {EMBEDDING_DIM} THEN embedding::FLOAT[{EMBEDDING_DIM}] END"
    )
    memory.execute("CREATE TABLE candidate_texts AS SELECT DISTINCT text FROM losing_candidates")
    return memory


def _search_index(catalog: Catalog, describer: str | None) -> duckdb.DuckDBPyConnection:
    """The catalog's search index, built once per catalog version (path and modification time)."""
    path = catalog.path.resolve()
    key = (str(path), path.stat().st_mtime_ns, describer)
    with _indexes_lock:
        if key in _indexes:
            _indexes.move_to_end(key)
            return _indexes[key]
    memory = _build_index(catalog, describer)
    with _indexes_lock:
        _indexes[key] = memory
        while len(_indexes) > INDEX_CACHE_SIZE:
            _indexes.popitem(last=False)[1].close()
    return memory


NO_TEXT_MATCHES = pa.table(
    {"text": pa.array([], pa.string()), "hits": pa.array([], pa.int64()), "similarity": pa.array([], pa.float64())}
)
NO_CANDIDATE_HITS = pa.table(
    {"unit_id": pa.array([], pa.int64()), "hits": pa.array([], pa.int64()), "text": pa.array([], pa.string())}
)
NO_NOTE_HITS = pa.table(
    {
        "run_id": pa.array([], pa.string()),
        "unit_key": pa.array([], pa.string()),
        "hits": pa.array([], pa.int64()),
        "text": pa.array([], pa.string()),
    }
)


def _query_catalog(catalog: Catalog, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    """Run a search query with the query's matching texts (``text_matches``), units with candidate
    hits (``candidate_hits``, left empty unless losing candidates count) and units whose people's
    labels say a query word (``note_hits``, empty unless notes count), computed on the in-memory
    index, visible to it as tables."""
    params = dict(params)
    vector, candidates, notes = params.pop("vector"), params.pop("candidates"), params.pop("notes")
    patterns = {name: value for name, value in params.items() if name.startswith("pattern_")}
    tables = {"text_matches": NO_TEXT_MATCHES, "candidate_hits": NO_CANDIDATE_HITS, "note_hits": NO_NOTE_HITS}
    if params["has_query"]:
        cursor = _search_index(catalog, params["describer"]).cursor()
        tables["text_matches"] = cursor.execute(
            text_matches_sql(len(patterns)),
            {**patterns, "vector": vector, "min_similarity": params["min_similarity"]},
        ).fetch_arrow_table()
        if patterns and candidates:
            tables["candidate_hits"] = cursor.execute(candidate_hits_sql(len(patterns)), patterns).fetch_arrow_table()
        labels = Notes(catalog.path).unit_labels() if patterns and notes else None
        if labels is not None and not labels.empty:
            cursor.register("unit_labels", labels)
            tables["note_hits"] = cursor.execute(note_hits_sql(len(patterns)), patterns).fetch_arrow_table()
        cursor.close()
    for name, table in tables.items():
        catalog.con.register(name, table)
    try:
        return catalog.con.execute(sql, {k: v for k, v in params.items() if k not in patterns}).df()
    finally:
        for name in tables:
            catalog.con.unregister(name)


#: Every unit passing the filters with its match signals, flags and ranking score, in few columns
#: (a page's details are joined afterwards), then the units that match.
RANKED_SQL = f"""
    ranked AS (
        SELECT u.unit_id, u.run_id, u.layer, l.layer_index, u.unit, d.evidence_type,
               coalesce(t.hits, 0) AS description_hits, coalesce(c.hits, 0) AS candidate_hits,
               c.text AS candidate_text, coalesce(n.hits, 0) AS note_hits, n.text AS note_text,
               coalesce(t.similarity, 0.0) AS similarity,
               coalesce(t.similarity, 0.0) >= $min_similarity AND coalesce(d.evidence_type, 'none') <> 'none'
                   AS semantic_hit,
               coalesce(t.hits, 0) > 0 OR coalesce(c.hits, 0) > 0 OR coalesce(n.hits, 0) > 0 AS keyword_hit,
               CASE WHEN $has_query THEN coalesce(t.similarity, 0.0)
                    + {DESCRIPTION_HIT_WEIGHT} * coalesce(t.hits, 0) / $n_terms
                    + {CANDIDATE_HIT_WEIGHT} * coalesce(c.hits, 0) / $n_terms
                    + {NOTE_HIT_WEIGHT} * coalesce(n.hits, 0) / $n_terms
                    ELSE 0.0 END AS rank_score
        FROM units u
        JOIN layers l ON l.run_id = u.run_id AND l.layer = u.layer
        LEFT JOIN descriptions d ON d.unit_id = u.unit_id AND d.describer = $describer
        LEFT JOIN text_matches t ON t.text = d.description
        LEFT JOIN candidate_hits c ON c.unit_id = u.unit_id
        LEFT JOIN note_hits n ON n.run_id = u.run_id AND n.unit_key = u.layer || ':' || u.unit
        WHERE (len($run_ids) = 0 OR list_contains($run_ids, u.run_id))
          AND (len($layers) = 0 OR list_contains($layers, u.layer))
          AND (len($evidence_types) = 0 OR list_contains($evidence_types, d.evidence_type))
          AND ($min_confidence IS NULL OR d.confidence >= $min_confidence)
          AND ($max_significance IS NULL OR d.significance <= $max_significance)
          AND ($min_score IS NULL OR d.score >= $min_score)
          AND ($min_iou IS NULL OR {BEST_IOU_SQL} >= $min_iou)
          AND ($min_act_mean IS NULL OR u.act_mean >= $min_act_mean)
          AND ($max_act_mean IS NULL OR u.act_mean <= $max_act_mean)
          AND ($min_act_max IS NULL OR u.act_max >= $min_act_max)
    ),
    matched AS (SELECT * FROM ranked WHERE NOT $has_query OR keyword_hit OR semantic_hit)
"""


def _search_params(
    catalog: Catalog, query: str, run_ids: Sequence[str] | None, describer: str | None,
    min_similarity: float, candidates: bool, semantic: bool, notes: bool, filters: dict[str, Any],
) -> dict[str, Any]:
    """The named parameters of one search (``pattern_0`` ... one per query word)."""
    chosen = UnitFilters.from_keywords(filters)
    query = (query or "").strip()
    terms = query_terms(query)
    return {
        **{f"pattern_{i}": pattern for i, pattern in enumerate(term_patterns(terms))},
        "describer": describer if describer is not None else default_describer(catalog),
        "vector": list(query_vector(query)) if query and semantic else None,
        "run_ids": list(run_ids or ()),
        "has_query": bool(query),
        "candidates": bool(candidates),
        "notes": bool(notes),
        "n_terms": max(len(terms), 1),
        "min_similarity": float(min_similarity),
        "layers": list(chosen.layers),
        "evidence_types": list(chosen.evidence_types),
        "min_confidence": chosen.min_confidence,
        "max_significance": chosen.max_significance,
        "min_score": chosen.min_score,
        "min_iou": chosen.min_iou,
        "min_act_mean": chosen.min_act_mean,
        "max_act_mean": chosen.max_act_mean,
        "min_act_max": chosen.min_act_max,
    }


def search_units(
    catalog: Catalog,
    query: str,
    *,
    run_ids: Sequence[str] | None = None,
    describer: str | None = None,
    limit: int | None = 50,
    offset: int = 0,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    candidates: bool = False,
    semantic: bool = True,
    notes: bool = True,
    **filters: Any,
) -> pd.DataFrame:
    """One page of units matching ``query`` (all units when it is empty), best match first.

    ``limit=None`` returns every match (for exports); otherwise at most ``limit`` rows from ``offset``.
    ``describer`` picks whose descriptions to search (default: the most used one). ``filters`` are
    the fields of ``UnitFilters`` (``layers``, ``evidence_types``, ``min_confidence``, ``max_significance``,
    ``min_score``, ``min_iou``, ``min_act_mean``, ``max_act_mean``, ``min_act_max``). With an empty
    query the units come in catalog order (run, layer, unit). Columns: unit_id, run_id, model, layer,
    layer_index, unit, key ('layer:unit'), describer, description, score (PMI), log_p_given_e, log_p,
    confidence, significance, evidence_type, best_iou, threshold, act_mean, act_std, act_max, description_hits,
    candidate_hits, candidate_text, note_hits, note_text (the unit's labels by people, when they say a
    query word), similarity, semantic_hit, keyword_hit, rank_score, total (how many units match in
    all, for paging), match ('keyword': a query word is in the description, in a person's label
    or, with ``candidates``, in a losing candidate; 'related': only the meaning is close; 'all': no
    query) and reason (why the unit matched, in words). Keyword matches come first, then related ones,
    each by ``rank_score``. ``semantic=False`` matches keywords only (no MiniLM).
    ``candidates=False`` (the default, as in ``audit``) ignores the losing candidates, so a unit
    described "large areas" with "dog" among its rejected candidates is no dog. ``notes=False``
    ignores people's labels (``milan_core.catalog.notes``), which otherwise count like descriptions.
    """
    params = _search_params(catalog, query, run_ids, describer, min_similarity, candidates, semantic, notes, filters)
    params.update(limit=None if limit is None else max(0, int(limit)), offset=max(0, int(offset)))
    sql = f"""
        WITH {RANKED_SQL},
        page AS (
            SELECT *, count(*) OVER () AS total FROM matched
            ORDER BY keyword_hit DESC, rank_score DESC, run_id, layer_index, unit LIMIT $limit OFFSET $offset
        )
        SELECT p.unit_id, p.run_id, r.model, p.layer, p.layer_index, p.unit, p.layer || ':' || p.unit AS key,
               d.describer, d.description, d.score, d.log_p_given_e, d.log_p, d.confidence, d.significance,
               p.evidence_type,
               {BEST_IOU_SQL} AS best_iou, u.threshold, u.act_mean, u.act_std, u.act_max,
               p.description_hits, p.candidate_hits, p.candidate_text, p.note_hits, p.note_text,
               p.similarity, p.semantic_hit,
               p.keyword_hit, p.rank_score, p.total,
               CASE WHEN NOT $has_query THEN 'all' WHEN p.keyword_hit THEN 'keyword' ELSE 'related' END AS match
        FROM page p JOIN units u ON u.unit_id = p.unit_id JOIN runs r ON r.run_id = p.run_id
        LEFT JOIN descriptions d ON d.unit_id = p.unit_id AND d.describer = $describer
        ORDER BY p.keyword_hit DESC, p.rank_score DESC, p.run_id, p.layer_index, p.unit
    """
    frame = _query_catalog(catalog, sql, params)
    terms = query_terms(query or "")
    frame["reason"] = [match_reason(row, terms) for row in frame.itertuples()]
    return frame


def count_matches(
    catalog: Catalog,
    query: str,
    *,
    run_ids: Sequence[str] | None = None,
    describer: str | None = None,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    candidates: bool = False,
    semantic: bool = True,
    notes: bool = True,
    **filters: Any,
) -> pd.DataFrame:
    """How many units of each run and layer match ``query``, next to how many units the layer has.

    Columns: run_id, model, layer, layer_index, matches, units, share (matches / units); every
    layer passing the filters appears, with 0 matches if none.
    """
    params = _search_params(catalog, query, run_ids, describer, min_similarity, candidates, semantic, notes, filters)
    sql = f"""
        WITH {RANKED_SQL}
        SELECT k.run_id, r.model, k.layer, k.layer_index, k.matches, k.units FROM (
            SELECT run_id, layer, any_value(layer_index) AS layer_index,
                   count(*) FILTER (WHERE NOT $has_query OR keyword_hit OR semantic_hit) AS matches,
                   count(*) AS units
            FROM ranked GROUP BY run_id, layer
        ) k JOIN runs r ON r.run_id = k.run_id
        ORDER BY k.run_id, k.layer_index
    """
    frame = _query_catalog(catalog, sql, params)
    frame["share"] = frame.matches / frame.units.clip(lower=1)
    return frame


def match_reason(row: Any, terms: Sequence[str]) -> str:
    """Why a unit matched, in words: which keywords it contains and how close its meaning is."""
    reasons = []
    description = (row.description or "") if isinstance(row.description, str) else ""
    said = [t for t in terms if re.search(r"\b" + re.escape(t), description, re.IGNORECASE)]
    if said:
        reasons.append("description says " + ", ".join(f"'{t}'" for t in said))
    if row.candidate_hits and isinstance(row.candidate_text, str):
        reasons.append(f"candidate '{row.candidate_text}' mentions the query")
    if row.note_hits and isinstance(row.note_text, str):
        reasons.append(f"matched a note: label '{row.note_text}'")
    if row.semantic_hit:
        reasons.append(f"meaning close to the query (cosine {row.similarity:.2f})")
    return "; ".join(reasons) or "all units (no query)"


def nearest_units(catalog: Catalog, unit_id: int, describer: str | None = None, limit: int = 8) -> pd.DataFrame:
    """The units (of any run) whose descriptions mean the closest thing to this unit's description.

    Columns: unit_id, run_id, key, description, similarity (cosine of the stored MiniLM vectors).
    Empty when the unit has no described vector.
    """
    describer = describer if describer is not None else default_describer(catalog)
    return catalog.con.execute(
        """
        WITH me AS (SELECT embedding FROM descriptions WHERE unit_id = $unit AND describer = $describer)
        SELECT u.unit_id, u.run_id, u.layer || ':' || u.unit AS key, d.description,
               list_dot_product(d.embedding, (SELECT embedding FROM me)) AS similarity
        FROM descriptions d JOIN units u ON u.unit_id = d.unit_id
        WHERE d.describer = $describer AND d.unit_id <> $unit AND (SELECT count(*) FROM me) > 0
        ORDER BY similarity DESC, u.unit_id LIMIT $limit
        """,
        {"unit": int(unit_id), "describer": describer, "limit": int(limit)},
    ).df()
