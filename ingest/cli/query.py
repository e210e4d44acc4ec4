"""``neurflow query``: list the query library, or run one query by name.

::

    neurflow query --list
    neurflow query trace_class --param class=bee --param limit=5
    neurflow query compare_classes -p class_a=bee -p class_b=fly --format json
    neurflow query biased_groups -p classes=bee,3 --format csv > biased.csv
    neurflow query group_detail --describe

The text that runs is exactly the ``.cypher`` file's (see :mod:`neurflow.queries.registry`);
parameters are typed from its header. Listing and describing need no database and do not
import torch.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import click

from .options import connect_from_options, db_options, echo_err, handle_errors

__all__ = ["query", "to_plain", "format_records"]

FORMATS = ("table", "json", "csv")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name", required=False)
@click.option("--list", "list_", is_flag=True, help="List the queries (name and description) and exit.")
@click.option("--describe", is_flag=True, help="Print the query's description, parameters, columns and Cypher text; do not run it.")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A query parameter, repeatable. Typed by the query's header: int, float, bool (true/false), "
    "string, lists as [1,2] or 1,2; 'null' for null.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format.")
@click.option("--max-width", type=int, default=60, show_default=True, help="Table format: cut cells longer than this (0 = never).")
@db_options
@handle_errors
def query(
    name: str | None,
    list_: bool,
    describe: bool,
    params: Sequence[str],
    fmt: str,
    max_width: int,
    uri: str | None,
    user: str | None,
    password: str | None,
    database: str | None,
) -> None:
    """Run the named Cypher query NAME from the query library (queries/*.cypher).

    Use --list to see the queries and --describe to see one query's parameters.
    """
    from neurflow.queries.registry import get_query, load_queries, parse_cli_params

    if list_:
        _print_list(load_queries(), fmt)
        return
    if not name:
        names = ", ".join(load_queries())
        raise click.UsageError(f"name a query to run, or use --list. Queries: {names}")
    q = get_query(name)
    if describe:
        _print_describe(q)
        return
    bound = parse_cli_params(q, params)  # before connecting: bad input needs no database

    from neurflow.queries.registry import run_query

    with connect_from_options(uri, user, password, database) as conn:
        records = run_query(conn.driver, q, bound, database=conn.database)
    keys = list(records[0].keys()) if records else list(q.column_names)
    rows = [[record[k] for k in keys] for record in records]
    click.echo(format_records(keys, rows, fmt, max_width=max_width), nl=False)
    if fmt == "table":
        echo_err(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def _print_list(queries: dict, fmt: str) -> None:
    if fmt == "json":
        doc = [
            {
                "name": q.name,
                "description": q.description,
                "params": [
                    {"name": p.name, "type": p.type, "required": p.required, "default": p.default, "example": p.example, "description": p.description}
                    for p in q.params
                ],
                "columns": [{"name": c.name, "type": c.type, "description": c.description} for c in q.columns],
            }
            for q in queries.values()
        ]
        click.echo(json.dumps(doc, indent=2))
        return
    if fmt == "csv":
        click.echo(format_records(["name", "description"], [[q.name, q.description] for q in queries.values()], "csv"), nl=False)
        return
    width = max((len(n) for n in queries), default=0)
    for q in queries.values():
        click.echo(f"{q.name:<{width}}  {q.description}")


def _print_describe(q) -> None:
    from neurflow.queries.registry import format_cli

    click.echo(f"{q.name}: {q.description}\n")
    if q.about:
        click.echo(q.about + "\n")
    click.echo("Parameters:" if q.params else "Parameters: none")
    for p in q.params:
        req = "required" if p.required else f"default {format_cli(p.default)}"
        click.echo(f"  --param {p.name}={format_cli(p.example)}\n      {p.type}, {req}: {p.description}")
    click.echo("\nColumns:")
    for c in q.columns:
        click.echo(f"  {c.name} ({c.type}): {c.description}")
    click.echo(f"\nCypher (queries/{q.filename}):\n")
    click.echo(q.text.rstrip("\n"))


# --------------------------------------------------------------------------- output


def to_plain(value: Any) -> Any:
    """A driver value -> JSON-ready Python (graph types become dicts, temporals ISO text).

    Nodes become ``{"_labels": [...], **properties}``, relationships
    ``{"_type", "_start", "_end", **properties}`` (start/end as ``uid``), paths
    ``{"nodes": [...], "relationships": [...]}``.
    """
    from neo4j.graph import Node, Path, Relationship

    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Path):
        return {"nodes": [to_plain(n) for n in value.nodes], "relationships": [to_plain(r) for r in value.relationships]}
    if isinstance(value, Node):
        return {"_labels": sorted(value.labels), **{k: to_plain(v) for k, v in value.items()}}
    if isinstance(value, Relationship):
        start = value.start_node.get("uid") if value.start_node is not None else None
        end = value.end_node.get("uid") if value.end_node is not None else None
        return {"_type": value.type, "_start": start, "_end": end, **{k: to_plain(v) for k, v in value.items()}}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "iso_format"):
        return value.iso_format()
    return str(value)


def _cell(value: Any, *, short: bool = True) -> str:
    """One table/csv cell: text as is, paths as uid chains, the rest as JSON.

    Floats: 6 significant digits when ``short`` (table), else every digit (csv).
    """
    from neo4j.graph import Node, Path, Relationship

    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}" if short else repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, Path):
        return " -> ".join(str(n.get("uid", "?")) for n in value.nodes)
    if isinstance(value, Node):
        return f"(:{':'.join(sorted(value.labels))} {value.get('uid', '')})"
    if isinstance(value, Relationship):
        return f"[:{value.type}]"
    return json.dumps(to_plain(value), separators=(",", ":"), default=str)


def format_records(keys: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, *, max_width: int = 60) -> str:
    """Render rows as ``table``, ``json`` (a list of objects) or ``csv``; ends with a newline."""
    if fmt == "json":
        return json.dumps([{k: to_plain(v) for k, v in zip(keys, row)} for row in rows], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(keys)
        for row in rows:
            writer.writerow([_cell(v, short=False) for v in row])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format '{fmt}'")
    cells = [[_cut(_cell(v), max_width) for v in row] for row in rows]
    widths = [max([len(k)] + [len(r[i]) for r in cells]) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    for r in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines) + "\n"


def _cut(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    if width and len(text) > width:
        return text[: max(width - 3, 1)] + "..."
    return text
