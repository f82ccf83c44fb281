"""Bringing an older catalog file forward: ``python -m milan_core migrate --catalog FILE``.

``MIGRATIONS`` is a list of steps, each taking a file from ``to_version - 1`` to ``to_version``
with plain SQL statements, applied in order inside one transaction (a failure leaves the file as
it was). A schema change appends one ``Step`` at the end and bumps ``schema.SCHEMA_VERSION``;
steps are frozen once released (they describe how an old file looked, not how today's tables look).

``V1_DDL`` is the schema of version 1 as it shipped, kept as data so the tests can build a file of
that version and check that migrating it ends exactly at today's schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from milan_core.catalog.schema import SCHEMA_VERSION
from milan_core.errors import UserError


@dataclass(frozen=True)
class Step:
    """The statements that take a catalog from ``to_version - 1`` to ``to_version``, and why."""

    to_version: int
    why: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Step, ...] = (
    Step(
        2,
        "each run keeps its own image paths (run_images); units lose hist_lo/hist_hi, copies of act_min/act_max",
        (
            """CREATE TABLE run_images (
                run_id    VARCHAR NOT NULL,
                image_id  BIGINT NOT NULL,
                path      VARCHAR NOT NULL,
                PRIMARY KEY (run_id, image_id)
            )""",
            # Version 1 kept the first run's path relative to its probe folder; each run's own
            # folder joined to it is the best that can be recovered (as version 1 readers did).
            """INSERT INTO run_images (run_id, image_id, path)
               SELECT DISTINCT u.run_id, e.image_id, rtrim(r.probe_root, '/') || '/' || i.path
               FROM exemplars e JOIN units u ON u.unit_id = e.unit_id JOIN runs r ON r.run_id = u.run_id
               JOIN images i ON i.image_id = e.image_id""",
            "ALTER TABLE images DROP COLUMN path",
            "ALTER TABLE units DROP COLUMN hist_lo",
            "ALTER TABLE units DROP COLUMN hist_hi",
        ),
    ),
    Step(
        3,
        "each description and candidate says how likely its evidence is by chance (significance, a p-value)",
        (
            "ALTER TABLE descriptions ADD COLUMN significance DOUBLE",
            "ALTER TABLE candidates ADD COLUMN significance DOUBLE",
        ),
    ),
    Step(
        4,
        "descriptions and candidates say how well each agrees with the unit's likely candidates (agreement)",
        (
            "ALTER TABLE descriptions ADD COLUMN agreement DOUBLE",
            "ALTER TABLE candidates ADD COLUMN agreement DOUBLE",
        ),
    ),
)

#: Version 1's tables exactly as that code created them.
V1_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS meta (
        key   VARCHAR PRIMARY KEY,
        value VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id        VARCHAR PRIMARY KEY,
        model         VARCHAR NOT NULL,
        layers        VARCHAR[] NOT NULL,
        probe_root    VARCHAR NOT NULL,
        config        JSON NOT NULL,
        code_version  VARCHAR NOT NULL,
        created_at    TIMESTAMP NOT NULL,
        n_images      INTEGER NOT NULL,
        n_skipped     INTEGER NOT NULL,
        seconds       DOUBLE NOT NULL,
        timings       JSON NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS layers (
        run_id       VARCHAR NOT NULL,
        layer        VARCHAR NOT NULL,
        layer_index  INTEGER NOT NULL,
        kind         VARCHAR NOT NULL,      -- 'conv' (N,C,H,W), 'tokens' (N,T,C) or 'flat' (N,C)
        n_units      INTEGER NOT NULL,
        map_height   INTEGER NOT NULL,
        map_width    INTEGER NOT NULL,
        PRIMARY KEY (run_id, layer)
    )""",
    """CREATE TABLE IF NOT EXISTS units (
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
        hist_lo    REAL NOT NULL,
        hist_hi    REAL NOT NULL,
        hist       INTEGER[] NOT NULL,
        UNIQUE (run_id, layer, unit)
    )""",
    """CREATE TABLE IF NOT EXISTS images (
        image_id   BIGINT PRIMARY KEY,
        sha256     VARCHAR NOT NULL UNIQUE,
        path       VARCHAR NOT NULL,
        width      INTEGER NOT NULL,
        height     INTEGER NOT NULL,
        label      VARCHAR,
        thumbnail  BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS exemplars (
        unit_id     BIGINT NOT NULL,
        rank        SMALLINT NOT NULL,
        image_id    BIGINT NOT NULL,
        activation  REAL NOT NULL,
        amap_min    REAL NOT NULL,
        amap_max    REAL NOT NULL,
        amap        BLOB NOT NULL,
        PRIMARY KEY (unit_id, rank)
    )""",
    """CREATE TABLE IF NOT EXISTS descriptions (
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
        PRIMARY KEY (unit_id, describer)
    )""",
    """CREATE TABLE IF NOT EXISTS candidates (
        unit_id          BIGINT NOT NULL,
        describer        VARCHAR NOT NULL,
        rank             SMALLINT NOT NULL,
        text             VARCHAR NOT NULL,
        log_p_given_e    DOUBLE NOT NULL,
        log_p            DOUBLE NOT NULL,
        score            DOUBLE NOT NULL,
        embedding        FLOAT[],
        PRIMARY KEY (unit_id, describer, rank)
    )""",
    """CREATE TABLE IF NOT EXISTS ablations (
        ablation_id  VARCHAR PRIMARY KEY,
        run_id       VARCHAR NOT NULL,
        describer    VARCHAR NOT NULL,
        images       VARCHAR NOT NULL,
        n_images     INTEGER NOT NULL,
        layers       VARCHAR[] NOT NULL,
        n_units      INTEGER NOT NULL,
        config       JSON NOT NULL,
        created_at   TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ablation_curves (
        ablation_id  VARCHAR NOT NULL,
        curve        VARCHAR NOT NULL,
        seed         INTEGER NOT NULL,
        step         INTEGER NOT NULL,
        n_ablated    INTEGER NOT NULL,
        fraction     DOUBLE NOT NULL,
        accuracy     DOUBLE NOT NULL,
        PRIMARY KEY (ablation_id, curve, seed, step)
    )""",
    """CREATE TABLE IF NOT EXISTS ablation_checks (
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
    )""",
    """CREATE TABLE IF NOT EXISTS audits (
        audit_id        VARCHAR PRIMARY KEY,
        query           VARCHAR NOT NULL,
        runs            VARCHAR[] NOT NULL,
        describer       VARCHAR,
        min_similarity  DOUBLE,
        created_at      TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS audit_units (
        audit_id     VARCHAR NOT NULL,
        unit_id      BIGINT NOT NULL,
        score        DOUBLE,
        similarity   DOUBLE,
        keyword_hit  BOOLEAN,
        PRIMARY KEY (audit_id, unit_id)
    )""",
    """CREATE TABLE IF NOT EXISTS edits (
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
    )""",)


def pending(version: int) -> list[Step]:
    """The steps a file of ``version`` needs, in order."""
    steps = [step for step in MIGRATIONS if step.to_version > version]
    if [step.to_version for step in steps] != list(range(version + 1, SCHEMA_VERSION + 1)):
        raise RuntimeError(f"MIGRATIONS do not lead from version {version} to {SCHEMA_VERSION} one step at a time")
    return steps


@dataclass(frozen=True)
class Migrated:
    """What ``migrate`` did: the versions, and the runs whose relative probe folder was not found."""

    before: int
    after: int
    unresolved: dict[str, str]  # run id -> its probe folder as typed


def migrate(path: Path) -> Migrated:
    """Bring the catalog at ``path`` to ``SCHEMA_VERSION`` in one transaction, and store the probe
    folders of runs dissected before paths were resolved as full paths (see ``resolve_probe_roots``)."""
    from milan_core.catalog.connection import Catalog

    with Catalog(path, writable=True, migrating=True) as catalog:
        version = catalog.schema_version()
        if version is None:
            raise UserError(f"{path} holds no catalog to migrate")
        if version > SCHEMA_VERSION:
            raise UserError(f"{path} has catalog schema {version}, newer than this code's {SCHEMA_VERSION}")
        with catalog.transaction() as con:
            for step in pending(version):
                for statement in step.statements:
                    con.execute(statement)
            con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
            unresolved = resolve_probe_roots(con)
        return Migrated(version, SCHEMA_VERSION, unresolved)


def resolve_probe_roots(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Runs of version 1 kept their probe folder as typed (``../shared/...``), relative to wherever
    the job ran. Where that folder exists relative to the current directory, the run's folder and
    image paths become full paths; the others are returned (run id -> folder) for a message."""
    unresolved = {}
    for run_id, root in con.execute("SELECT run_id, probe_root FROM runs ORDER BY run_id").fetchall():
        if Path(root).is_absolute():
            continue
        folder = Path(root).resolve()
        if not folder.is_dir():
            unresolved[run_id] = root
            continue
        prefix = len(root.rstrip("/"))
        con.execute(
            "UPDATE run_images SET path = ? || substr(path, ?) WHERE run_id = ?", [str(folder), prefix + 1, run_id]
        )
        con.execute("UPDATE runs SET probe_root = ? WHERE run_id = ?", [str(folder), run_id])
    return unresolved
