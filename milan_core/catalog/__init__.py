"""The catalog: the only package that holds SQL.

Everything that reads or writes a catalog file goes through here, one module per group of tables:
``schema`` (tables, what belongs to what) and ``migrate`` (older files brought forward),
``connection`` (the ``Catalog`` file handle: opening, locks, versions), ``runs`` (runs, layers,
run_images), ``units`` (units, exemplars, images), ``descriptions`` (descriptions, candidates),
``results`` (audits, ablations, edits) and ``search`` (keyword and meaning search over
descriptions). Commands and app pages call these and hold no SQL of their own.
"""

from milan_core.catalog.connection import Catalog, check_writable
from milan_core.catalog.runs import MAKE_ONE, RunRecord, RunTables, RunWrite
from milan_core.catalog.units import ImageRecord

__all__ = ["MAKE_ONE", "Catalog", "ImageRecord", "RunRecord", "RunTables", "RunWrite", "check_writable"]
