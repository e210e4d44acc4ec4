"""``neurflow report``: one self-contained HTML file with the explorer's views of some classes.

The file holds, for each given class, its concept circuit (with the evaluation table and
plots when the class was evaluated), the page of every neuron group of the circuit, and
the biased groups of those classes; links between them are anchors, and each page is a
``<section>`` shown when its anchor is targeted (CSS only). Images are inlined as
``data:`` URIs, the style sheet is inlined, and a Content-Security-Policy forbids every
request, so the file opens from disk in a browser with no server and no network.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from neurflow.ingest.errors import InputError

from . import views
from .media import MediaStore
from .render import ReportLinks, anchor, environment

__all__ = ["ReportResult", "build_report", "REPORT_CSP"]

REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


@dataclass(frozen=True)
class ReportResult:
    path: Path
    bytes: int
    classes: tuple[str, ...]
    groups: int
    images: int
    missing_images: tuple[str, ...]
    seconds: float


def build_report(run: views.Runner, classes: Sequence[str], out: Path, *, db_label: str, data_roots: Sequence[Path] = ()) -> ReportResult:
    """Write the report of ``classes`` to ``out``.

    Args:
        run: the query library (:func:`neurflow.ingest.web.views.runner`).
        classes: classes by name, index or uid (as ``$class`` in the queries).
        out: the HTML file to write.
        db_label: the database the report was read from (URI and database; no password).
        data_roots: folders that image ids are relative to (source images of patches).

    Raises:
        InputError: no class given, or a class is not in the graph.
    """
    t0 = time.perf_counter()
    if not classes:
        raise InputError("give at least one class (--classes bee,fish)")
    media = MediaStore(run, data_roots)
    circuits = []
    for cls in classes:
        try:
            circuits.append(views.circuit_view(run, cls))
        except views.NotFound:
            raise InputError(f"class '{cls}' is not in the graph (see 'neurflow query classes')") from None
    uids = [c["class"] for c in circuits]
    group_uids = [n["box"].group for c in circuits for n in c["nodes"]]
    links = ReportLinks(media, set(uids), set(group_uids))
    groups = [views.group_view(run, g, media) for g in group_uids]
    bias_params = {"classes": uids} if "classes" in views.declared("biased_groups") else {}
    biased = views.biased_view(run, bias_params)
    if not bias_params:  # an older query without $classes: keep the given classes' rows
        biased["rows"] = [r for r in biased["rows"] if r.get("class") in set(uids)]
    plots = {c["class"]: [_png_uri(p) for p in views.evaluation_plots(c.get("artifact"))] for c in circuits}
    css = (resources.files("neurflow.ingest.web") / "static" / "style.css").read_text(encoding="utf-8")
    html = environment().get_template("report.html").render(
        links=links, circuits=circuits, groups=groups, biased=biased, plots=plots, css=css, csp=REPORT_CSP, db_label=db_label,
        generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), anchor=anchor,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return ReportResult(out, out.stat().st_size, tuple(uids), len(groups), sum(1 for v in links._uris.values() if v), tuple(links.missing),
                        time.perf_counter() - t0)


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
