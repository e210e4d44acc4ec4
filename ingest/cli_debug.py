"""``neurflow debug``: rank a class's neuron groups by bias evidence and write it to the graph."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_common import connect_from_options, db_options, echo_err, handle_errors, parse_floats

__all__ = ["debug"]


@click.command()
@click.option("--model", default="resnet50", show_default=True, help="As for 'neurflow compute' ('demo' for the demo model).")
@click.option("--weights", default=None)
@click.option("--data", type=click.Path(path_type=Path), required=True, help="ImageFolder root holding every class (false positives come from the other classes).")
@click.option("--classes", default="all", show_default=True)
@click.option("--images", "images_dir", type=click.Path(path_type=Path), default=None, help="Optional folder of extra images to score with the group metric.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("artifacts"), show_default=True, envvar="NEURFLOW_ARTIFACTS", help="Artifact directory of the circuits.")
@click.option("--draws", type=int, default=20, show_default=True, help="Random neuron sets per group.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--top", "top_n", type=int, default=5, show_default=True, help="Top images/patches by logit drop kept per group.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--input-size", type=int, default=None)
@click.option("--mean", default=None)
@click.option("--std", default=None)
@click.option("--no-normalize", is_flag=True)
@click.option("--demo-root", type=click.Path(path_type=Path), default=Path(".neurflow/demo"), show_default=True, help="Where the demo model lives (--model demo).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--no-graph", is_flag=True, help="Only print; write nothing to the graph.")
@db_options
@click.option("--quiet", is_flag=True)
@handle_errors
def debug(model, weights, data, classes, images_dir, out, draws, seed, top_n, device, input_size, mean, std, no_normalize, demo_root, fmt, no_graph, uri, user, password, database, quiet) -> None:
    """Score every neuron group of a class for bias (Section 5.1) and write the evidence.

    Bias score = activity kept on false positives (M_fp / M_tp, at most 1) x causal effect of
    masking the group on false positives beyond random neuron sets (z / 3, at most 1, and 0
    unless the empirical p-value against the random sets is <= 0.05) x
    (0.5 + 0.5 x sharing with other classes' circuits); see neurflow.debugging.bias_score.
    """
    from .debugging import debug_classes, result_json
    from .pipeline import ComputeRequest

    if draws < 1:
        raise click.BadParameter("must be >= 1", param_hint="--draws")
    req = ComputeRequest(
        model=model, data=data, out=out, weights=weights, device=device, input_size=input_size,
        mean=parse_floats(mean, "--mean"), std=parse_floats(std, "--std"), normalize=not no_normalize,
        demo_root=demo_root if model == "demo" else None,
    )
    if no_graph:
        results = debug_classes(None, req, classes=classes, images_dir=images_dir, draws=draws, seed=seed, top_n=top_n, quiet=quiet, write=False, log=echo_err)
    else:
        with connect_from_options(uri, user, password, database) as conn:
            results = debug_classes(conn, req, classes=classes, images_dir=images_dir, draws=draws, seed=seed, top_n=top_n, quiet=quiet, log=echo_err)
    if fmt == "json":
        click.echo(json.dumps([result_json(c, r) for c, r in results], indent=1))
        return
    for circuit, result in results:
        click.echo(f"class {circuit.class_index} ({circuit.class_name}): {result.n_tp} true positives, {result.n_fp} false positives; threshold {result.threshold}")
        click.echo(f"  {'rank':>4} {'layer':<12} {'grp':>3} {'bias':>6} {'M_tp':>6} {'M_fp':>6} {'fp_flip':>7} {'rand':>6} {'z':>6} {'p':>6} {'tp_flip':>7} {'shared':>6}  neurons")
        for rank, (e, neurons) in enumerate(zip(result.groups, neuron_cells(result.groups)), start=1):
            flag = "*" if e.bias_score >= result.threshold else " "
            click.echo(
                f" {flag}{rank:>4} {e.layer:<12} {e.index:>3} {e.bias_score:>6.3f} {_f(e.tp_metric)} {_f(e.fp_metric)} {_f(e.fp_flip, 7)} "
                f"{_f(e.random_fp_flip_mean)} {_f(e.z_fp_flip)} {_f(e.p_fp_flip)} {_f(e.tp_flip, 7)} {e.shared_classes if e.shared_classes is not None else '-':>6}  {neurons}"
            )
    if not results:
        echo_err("debug: no class could be debugged")
        raise SystemExit(1)


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
