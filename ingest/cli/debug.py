"""``neurflow debug``: rank a class's neuron groups by bias evidence and write it to the graph."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import artifacts_option, connect_from_options, db_options, echo_err, handle_errors, model_options, model_options_from, quiet_option

__all__ = ["debug"]


def _default(name: str):
    """A DebugConfig field's default: one source of defaults for the options."""
    from dataclasses import fields

    from neurflow.debugging import DebugConfig

    return next(f.default for f in fields(DebugConfig) if f.name == name)


@click.command()
@model_options(default_model=None)
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="ImageFolder root holding every class (false positives come from the other classes) [default: the artifacts' data root].")
@click.option("--classes", default="all", show_default=True)
@click.option("--images", "images_dir", type=click.Path(path_type=Path), default=None, help="Optional folder of extra images to score with the group metric.")
@artifacts_option
@click.option("--annotations", "annotations_dir", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Per-pixel concept annotations of --data (the 'neurflow label --labeller annotations' format): on the false positives "
                   "a group removes, objects (any class's own concepts) cover >= 0.5 of the annotated pixels where it fires: not spurious; "
                   "<= 0.25 (a context fires): spurious. Without it, the stored concept labels decide.")
@click.option("--alpha", type=float, default=_default("alpha"), show_default=True, help="False-discovery rate (Benjamini-Hochberg) for 'causes false positives'.")
@click.option("--fdr-scope", type=click.Choice(["run", "class"]), default=_default("fdr_scope"), show_default=True, help="One FDR family over every class debugged together, or one per class.")
@click.option("--min-fp", type=int, default=_default("min_fp"), show_default=True, help="Evidence floor: fewer false positives give 'insufficient evidence'.")
@click.option("--draws", type=int, default=_default("reference_draws"), show_default=True, help="Reference random neuron sets per group (random means; the fewest permutation draws).")
@click.option("--max-draws", type=int, default=_default("max_draws"), show_default=True, help="Most permutation draws per group (the test stops early when clearly not significant).")
@click.option("--max-tp", type=int, default=200, show_default=True, help="True positives kept per class (a seeded sample when there are more).")
@click.option("--max-fp", type=int, default=500, show_default=True, help="False positives kept per class (a seeded sample when there are more).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Images per forward pass of the classification pass.")
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader workers decoding images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--top", "top_n", type=int, default=_default("top_n"), show_default=True, help="Top images/patches by logit drop kept per group.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--no-graph", is_flag=True, help="Only print; write nothing to the graph.")
@db_options
@quiet_option
@handle_errors
def debug(data, classes, images_dir, out, annotations_dir, alpha, fdr_scope, min_fp, draws, max_draws, max_tp, max_fp, batch_size, workers, seed, top_n,
          fmt, no_graph, uri, user, password, database, quiet, **model_kw) -> None:
    """Test every neuron group of a class for causing its false positives, and for being spurious (Section 5.1).

    A group *causes false positives* when masking it flips more of the class's false
    positives than random neuron sets of its size from its layer (permutation p-value,
    Benjamini-Hochberg q-value <= --alpha). It is *spurious* when, in addition, its concept
    label says it is not part of the class ('neurflow label'); without a label the verdict
    says 'spuriousness unknown'. A class with fewer than --min-fp false positives gets
    'insufficient evidence'. Groups are ranked by the bias score: the share of the false
    positives that random sets leave which masking removes, times one minus the same share
    of destroyed true positives (see neurflow.debugging.bias_score).

    The model, its preprocessing, the data root and the artifacts default to what the
    classes' artifacts recorded (their run.json; the artifact folders the graph names).
    """
    from neurflow.debugging import DebugConfig

    from ..debugging import debug_classes, result_json
    from ..session import locate_artifacts, open_artifacts

    for name, value in (("--draws", draws), ("--min-fp", min_fp), ("--batch-size", batch_size)):
        if value < 1:
            raise click.BadParameter("must be >= 1", param_hint=name)
    for name, value in (("--max-tp", max_tp), ("--max-fp", max_fp)):
        if value < 1:
            raise click.BadParameter("must be >= 1", param_hint=name)
    if workers < 0:
        raise click.BadParameter("must be >= 0", param_hint="--workers")
    if max_draws < draws:
        raise click.BadParameter(f"must be >= --draws ({draws})", param_hint="--max-draws")
    if not 0.0 < alpha < 1.0:
        raise click.BadParameter("must be in (0, 1)", param_hint="--alpha")
    config = DebugConfig(alpha=alpha, min_fp=min_fp, reference_draws=draws, max_draws=max_draws, fdr_scope=fdr_scope, seed=seed, top_n=top_n)
    opts = model_options_from(model_kw)
    options = dict(classes=classes, images_dir=images_dir, annotations=annotations_dir, config=config, max_tp=max_tp, max_fp=max_fp, batch_size=batch_size, workers=workers, quiet=quiet, log=echo_err)
    paths = [out] if out is not None else []
    if no_graph:
        artifacts = open_artifacts(locate_artifacts(paths), opts, data)
        results = debug_classes(None, artifacts, write=False, **options)
    else:
        with connect_from_options(uri, user, password, database) as conn:
            artifacts = open_artifacts(locate_artifacts(paths, conn), opts, data)
            results = debug_classes(conn, artifacts, **options)
    names = {c.class_index: c.class_name for c, _ in results}
    if fmt == "json":
        click.echo(json.dumps([result_json(c, r, names) for c, r in results], indent=1))
        return
    for circuit, result in results:
        print_table(circuit, result, names)
    if not results:
        echo_err("debug: no class could be debugged")
        raise SystemExit(1)


def print_table(circuit, result, names: dict[int, str]) -> None:
    """The ranked table of one class: verdict, test, and one row per group."""
    cfg = result.config
    click.echo(f"class {circuit.class_index} ({circuit.class_name}): {result.verdict}; {result.n_tp} true positives, {result.n_fp} false positives")
    if not result.groups:
        click.echo(f"  fewer than {cfg.min_fp} false positives (the evidence floor): no group tested")
        return
    click.echo(f"  test: FPs flipped by masking vs random sets of the same size (permutation p), Benjamini-Hochberg over {result.n_tests} groups ({cfg.fdr_scope}), q <= {cfg.alpha}")
    click.echo(f"  {'rank':>4} {'layer':<12} {'grp':>3} {'score':>6} {'fp_flip':>7} {'rand':>6} {'tp_flip':>7} {'rand':>6} {'p':>8} {'q':>8}  {'verdict':<45} neurons")
    for rank, (e, neurons) in enumerate(zip(result.groups, neuron_cells(result.groups)), start=1):
        flag = "*" if e.verdict == "spurious" else "+" if e.causes_fp else " "
        confusers = ", ".join(f"{names.get(k, k)} {n}/{t}" for k, n, t in e.confusers)
        verdict = e.verdict + (f" ({confusers})" if e.causes_fp and confusers else "")
        click.echo(
            f" {flag}{rank:>4} {e.layer:<12} {e.index:>3} {e.bias_score:>6.3f} {_f(e.fp_flip, 7)} {_f(e.random_fp_flip_mean)} {_f(e.tp_flip, 7)} "
            f"{_f(e.random_tp_flip_mean)} {_g(e.p_fp_flip)} {_g(e.q_value)}  {verdict:<45} {neurons}"
        )


def _g(x, width: int = 8) -> str:
    return f"{x:>{width}.2g}" if x is not None else f"{'-':>{width}}"


def neuron_cells(groups, shown: int = 8) -> list[str]:
    """The table's neurons column, in rank order: the first ``shown`` channels and how many
    more, or "same neurons as rank N" for a group whose neuron set a higher-ranked group of
    its layer already has (two neuron groups can hold the same neurons through different
    semantic groups; masking them is then the same experiment)."""
    first: dict[tuple[str, tuple[int, ...]], int] = {}
    cells = []
    for rank, e in enumerate(groups, start=1):
        key = (e.layer, tuple(sorted(e.channels)))
        if key in first:
            cells.append(f"same neurons as rank {first[key]}")
            continue
        first[key] = rank
        channels = list(e.channels)
        more = f" +{len(channels) - shown} more" if len(channels) > shown else ""
        cells.append(f"{channels[:shown]}{more}")
    return cells


def _f(x, width: int = 6) -> str:
    return f"{x:>{width}.3f}" if x is not None else f"{'-':>{width}}"
