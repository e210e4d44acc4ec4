"""The Cypher query library: one query per ``.cypher`` file, the single source of truth.

::

    from neurflow.queries import run_query
    records = run_query(conn.driver, "trace_class", {"class": "bee", "limit": 5}, database=conn.database)

See :mod:`neurflow.queries.registry` for the header format and parameter binding, and
``docs/graph-schema.md`` for the graph the queries read.
"""

from .registry import (
    Column,
    Param,
    ParameterError,
    Query,
    QueryFileError,
    UnknownQueryError,
    bind_params,
    get_query,
    load_queries,
    run_query,
)

__all__ = [
    "Column",
    "Param",
    "ParameterError",
    "Query",
    "QueryFileError",
    "UnknownQueryError",
    "bind_params",
    "get_query",
    "load_queries",
    "run_query",
]
