"""``neurflow export --format neo4j-admin ARTIFACTS... --to DIR``: CSV files for Neo4j's offline bulk import.

Parses, calls :func:`neurflow.ingest.graph.export.export_artifacts` (the same rows as
``neurflow load`` + ``neurflow link``), and prints what it wrote and the import command
(also in ``DIR/README.txt``). No database is contacted.
"""

from __future__ import annotations

from pathlib import Path

import click

from .options import handle_errors

__all__ = ["export"]


@click.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["neo4j-admin"]), default="neo4j-admin", show_default=True,
              help="neo4j-admin: node and relationship CSV files for 'neo4j-admin database import full'.")
@click.option("--to", "out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Directory for the CSV files and README.txt.")
@click.option("--database", default="neo4j", show_default=True, help="Database name in the printed import command.")
@click.option("--no-link", is_flag=True, help="Leave out the cross-class concept atlas (neurflow link's part).")
@click.option("--quiet", is_flag=True, help="Print only the summary line.")
@handle_errors
def export(artifacts, fmt, out, database, no_link, quiet) -> None:
    """Export circuit artifacts (all classes at once) as CSV files for neo4j-admin import."""
    from ..graph.export import export_artifacts

    try:
        res = export_artifacts(artifacts, out, link=not no_link, database=database)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"export: {res.nodes} nodes, {res.relationships} relationships in {len(res.node_files) + len(res.relationship_files)} CSV files "
               f"({res.bytes / 1e6:.1f} MB, {res.seconds:.1f} s) under {res.directory}")
    if not quiet:
        click.echo(f"import (from {res.directory}; see README.txt):\n  {res.command}")
