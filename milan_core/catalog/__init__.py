"""The catalog: the only package that holds SQL.

Everything that reads or writes a catalog file goes through here: ``schema`` (tables and
migrations), ``connection`` (the ``Catalog`` file handle, runs, units, exemplars, images) and
``search`` (keyword and meaning search over descriptions). Commands and app pages call these
functions and hold no SQL of their own.
"""

from milan_core.catalog.connection import MAKE_ONE, Catalog, ImageRecord, RunRecord, RunTables

__all__ = ["MAKE_ONE", "Catalog", "ImageRecord", "RunRecord", "RunTables"]
