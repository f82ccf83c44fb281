"""The catalog's schema: the one place where its tables are defined.

Every table the project writes is created here, and ``SCHEMA_VERSION`` says which shape a catalog
file has. A reader that finds a newer version than it knows refuses the file with a sentence
instead of misreading it; an older file is brought forward by ``milan_core.catalog.migrate``
(``python -m milan_core migrate --catalog FILE``). Changing a table here means bumping
``SCHEMA_VERSION`` and appending one step to ``migrate.MIGRATIONS``; a test checks that migrating
the oldest schema ends exactly at this one.

Unit ids are global integers (``units.unit_id``) so that exemplars, descriptions and results of
the applications can point at a unit with one column; the human-readable id used in links, exports
and logs is ``layer:unit`` within a run. ``CASCADE`` says, once, which rows belong to which (what
a foreign key with ON DELETE CASCADE would say, which DuckDB does not offer), so that deleting a
run never names every table by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 4

#: Ordered DDL statements of the current version. Every statement is idempotent so that opening a catalog
#: for writing can always run them.
DDL: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS meta (
        key   VARCHAR PRIMARY KEY,
        value VARCHAR NOT NULL
    )
    """,
    # One row per dissection: the model, its layers, the probe set and every parameter that made
    # the results, so that any number in the catalog can be traced back to its cause.
    """
    CREATE TABLE IF NOT EXISTS runs (
        run_id        VARCHAR PRIMARY KEY,
        model         VARCHAR NOT NULL,
        layers        VARCHAR[] NOT NULL,
        probe_root    VARCHAR NOT NULL,     -- resolved folder the probe images were read from
        config        JSON NOT NULL,
        code_version  VARCHAR NOT NULL,
        created_at    TIMESTAMP NOT NULL,
        n_images      INTEGER NOT NULL,
        n_skipped     INTEGER NOT NULL,
        seconds       DOUBLE NOT NULL,
        timings       JSON NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS layers (
        run_id       VARCHAR NOT NULL,
        layer        VARCHAR NOT NULL,
        layer_index  INTEGER NOT NULL,
        kind         VARCHAR NOT NULL,      -- 'conv' (N,C,H,W), 'tokens' (N,T,C) or 'flat' (N,C)
        n_units      INTEGER NOT NULL,
        map_height   INTEGER NOT NULL,
        map_width    INTEGER NOT NULL,
        PRIMARY KEY (run_id, layer)
    )
    """,
    # Per-unit activation statistics over every spatial position of every probe image.
    # hist is a coarse histogram (counts over equal bins from act_min to act_max) for plots.
    """
    CREATE TABLE IF NOT EXISTS units (
        unit_id    BIGINT PRIMARY KEY,
        run_id     VARCHAR NOT NULL,
        layer      VARCHAR NOT NULL,
        unit       INTEGER NOT NULL,
        threshold  REAL NOT NULL,
        quantile   REAL NOT NULL,
        act_mean   REAL NOT NULL,
        act_std    REAL NOT NULL,
        act_min    REAL NOT NULL,
        act_max    REAL NOT NULL,
        hist       INTEGER[] NOT NULL,
        UNIQUE (run_id, layer, unit)
    )
    """,
    # Images that appear as an exemplar of some unit, stored once per content hash however many
    # units or runs use them. The thumbnail is the model's own view (after resize and crop), so
    # activation maps line up with it. Where the file is belongs to a run (run_images): two runs
    # may have read the same photo from two folders.
    """
    CREATE TABLE IF NOT EXISTS images (
        image_id   BIGINT PRIMARY KEY,
        sha256     VARCHAR NOT NULL UNIQUE,
        width      INTEGER NOT NULL,
        height     INTEGER NOT NULL,
        label      VARCHAR,
        thumbnail  BLOB NOT NULL
    )
    """,
    # The resolved path of each stored image as one run read it.
    """
    CREATE TABLE IF NOT EXISTS run_images (
        run_id    VARCHAR NOT NULL,
        image_id  BIGINT NOT NULL,
        path      VARCHAR NOT NULL,
        PRIMARY KEY (run_id, image_id)
    )
    """,
    # The k top-activating images of a unit. amap holds the unit's activation map at feature-map
    # size, quantised to uint8 between amap_min and amap_max (row-major, map_height x map_width of
    # the unit's layer); the mask is the upsampled map above the unit's threshold.
    """
    CREATE TABLE IF NOT EXISTS exemplars (
        unit_id     BIGINT NOT NULL,
        rank        SMALLINT NOT NULL,
        image_id    BIGINT NOT NULL,
        activation  REAL NOT NULL,
        amap_min    REAL NOT NULL,
        amap_max    REAL NOT NULL,
        amap        BLOB NOT NULL,
        PRIMARY KEY (unit_id, rank)
    )
    """,
    # One chosen description per unit and describer (filled by `describe`).
    """
    CREATE TABLE IF NOT EXISTS descriptions (
        unit_id          BIGINT NOT NULL,
        describer        VARCHAR NOT NULL,
        description      VARCHAR NOT NULL,
        score            DOUBLE NOT NULL,
        log_p_given_e    DOUBLE NOT NULL,
        log_p            DOUBLE NOT NULL,
        confidence       DOUBLE NOT NULL,
        evidence_type    VARCHAR NOT NULL,
        evidence         JSON NOT NULL,
        embedding        FLOAT[],
        significance     DOUBLE,            -- p-value: this much evidence by chance (NULL: not measured)
        agreement        DOUBLE,            -- expected similarity with the unit's likely candidates
        PRIMARY KEY (unit_id, describer)
    )
    """,
    # Every candidate the selection rule weighed, so a user can see why a description won.
    """
    CREATE TABLE IF NOT EXISTS candidates (
        unit_id          BIGINT NOT NULL,
        describer        VARCHAR NOT NULL,
        rank             SMALLINT NOT NULL,
        text             VARCHAR NOT NULL,
        log_p_given_e    DOUBLE NOT NULL,
        log_p            DOUBLE NOT NULL,
        score            DOUBLE NOT NULL,
        embedding        FLOAT[],
        significance     DOUBLE,
        agreement        DOUBLE,
        PRIMARY KEY (unit_id, describer, rank)
    )
    """,
    # Results of the applications (milan_core.applications). An ablation study is one run, probe
    # set and set of layers; its curves hold accuracy after each step of each order (random orders
    # once per seed) and its checks the class-specific comparison for a few concepts.
    """
    CREATE TABLE IF NOT EXISTS ablations (
        ablation_id  VARCHAR PRIMARY KEY,
        run_id       VARCHAR NOT NULL,
        describer    VARCHAR NOT NULL,
        images       VARCHAR NOT NULL,
        n_images     INTEGER NOT NULL,
        layers       VARCHAR[] NOT NULL,
        n_units      INTEGER NOT NULL,
        config       JSON NOT NULL,
        created_at   TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS ablation_curves (
        ablation_id  VARCHAR NOT NULL,
        curve        VARCHAR NOT NULL,
        seed         INTEGER NOT NULL,
        step         INTEGER NOT NULL,
        n_ablated    INTEGER NOT NULL,
        fraction     DOUBLE NOT NULL,
        accuracy     DOUBLE NOT NULL,
        PRIMARY KEY (ablation_id, curve, seed, step)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS ablation_checks (
        ablation_id           VARCHAR NOT NULL,
        concept               VARCHAR NOT NULL,
        n_units               INTEGER NOT NULL,
        n_concept_images      INTEGER NOT NULL,
        n_other_images        INTEGER NOT NULL,
        concept_before        DOUBLE,
        concept_after         DOUBLE,
        other_before          DOUBLE,
        other_after           DOUBLE,
        random_concept_after  DOUBLE,
        random_concept_sd     DOUBLE,
        random_other_after    DOUBLE,
        PRIMARY KEY (ablation_id, concept)
    )
    """,
    # An audit: the units of one or more runs whose descriptions matched a query.
    """
    CREATE TABLE IF NOT EXISTS audits (
        audit_id        VARCHAR PRIMARY KEY,
        query           VARCHAR NOT NULL,
        runs            VARCHAR[] NOT NULL,
        describer       VARCHAR,
        min_similarity  DOUBLE,
        created_at      TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS audit_units (
        audit_id     VARCHAR NOT NULL,
        unit_id      BIGINT NOT NULL,
        score        DOUBLE,
        similarity   DOUBLE,
        keyword_hit  BOOLEAN,
        PRIMARY KEY (audit_id, unit_id)
    )
    """,
    # An edit: units switched off because their descriptions matched a query, the file the edited
    # model went to, and accuracy before and after on a labelled set.
    """
    CREATE TABLE IF NOT EXISTS edits (
        edit_id          VARCHAR PRIMARY KEY,
        run_id           VARCHAR NOT NULL,
        query            VARCHAR NOT NULL,
        units            VARCHAR[] NOT NULL,
        path             VARCHAR NOT NULL,
        images           VARCHAR NOT NULL,
        n_images         INTEGER NOT NULL,
        accuracy_before  DOUBLE NOT NULL,
        accuracy_after   DOUBLE NOT NULL,
        created_at       TIMESTAMP NOT NULL
    )
    """,
)



@dataclass(frozen=True)
class Link:
    """Rows of ``table`` belong to the row of ``parent`` whose ``parent_key`` equals their ``column``."""

    table: str
    column: str
    parent: str
    parent_key: str


#: Which rows go when their owner goes. A new table that hangs off a run, a unit or a result adds
#: one line here, and deleting a run takes its rows with it.
CASCADE: tuple[Link, ...] = (
    Link("layers", "run_id", "runs", "run_id"),
    Link("units", "run_id", "runs", "run_id"),
    Link("run_images", "run_id", "runs", "run_id"),
    Link("exemplars", "unit_id", "units", "unit_id"),
    Link("descriptions", "unit_id", "units", "unit_id"),
    Link("candidates", "unit_id", "units", "unit_id"),
    Link("audit_units", "unit_id", "units", "unit_id"),
    Link("audit_units", "audit_id", "audits", "audit_id"),
    Link("ablations", "run_id", "runs", "run_id"),
    Link("ablation_curves", "ablation_id", "ablations", "ablation_id"),
    Link("ablation_checks", "ablation_id", "ablations", "ablation_id"),
    Link("edits", "run_id", "runs", "run_id"),
)

#: The tables a dissection itself writes; everything else under a run is derived from them.
DISSECTION_TABLES = frozenset({"runs", "layers", "units", "run_images", "exemplars"})
