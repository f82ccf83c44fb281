"""milan_core: describe every unit of a vision model in plain language, and keep it in DuckDB.

The pipeline, one module per stage:
``images`` -> ``models`` + ``hooks`` -> ``statistics`` -> ``exemplars`` -> ``describe`` ->
``catalog`` (schema in ``schema``), driven by ``dissect`` and the command line in ``cli``.
"""

__version__ = "0.1.0"
