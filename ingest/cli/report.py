"""``neurflow report``: one self-contained HTML file of some classes' circuits, groups and bias evidence.

::

    neurflow report --classes bee --out report.html
    neurflow report --classes bee,leaf --data .neurflow/demo/world/val --out review.html
"""

from __future__ import annotations

from pathlib import Path

import click

from .options import connect_from_options, db_options, echo_err, handle_errors

__all__ = ["report"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--classes", required=True, help="Comma-separated classes, each by name, index or uid.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=Path("report.html"), show_default=True, help="The HTML file to write.")
@click.option("--data", "data_roots", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Image folder the circuits were computed from (repeatable): patches are then drawn on their source images.")
@db_options
@handle_errors
def report(classes: str, out: Path, data_roots: tuple[Path, ...], uri, user, password, database) -> None:
    """Write one HTML file (images inlined, no external requests) with the circuits of CLASSES."""
    names = [c.strip() for c in classes.split(",") if c.strip()]
    if not names:
        raise click.BadParameter("expected one or more class names, e.g. bee,fish", param_hint="--classes")
    for root in data_roots:
        if not root.is_dir():
            raise click.BadParameter(f"'{root}' is not a folder", param_hint="--data")
    from ..web.report import build_report
    from ..web.views import runner
    from .serve import db_label

    with connect_from_options(uri, user, password, database) as conn:
        result = build_report(runner(conn.driver, conn.database), names, out, db_label=db_label(conn), data_roots=data_roots)
    click.echo(f"wrote {result.path} ({result.bytes / 1e6:.2f} MB): {len(result.classes)} class(es), {result.groups} groups, "
               f"{result.images} images inlined, {result.seconds:.1f} s")
    if result.missing_images:
        echo_err(f"{len(result.missing_images)} image(s) not found (thumbnails or source images missing; pass --data for source images)")
