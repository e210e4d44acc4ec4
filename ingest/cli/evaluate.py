"""``neurflow evaluate optimality|fidelity|correlation|all``: the Section 4 experiments.

Parse the options, call :func:`neurflow.ingest.evaluating.evaluate_artifact` per artifact,
print a table (or the summaries as JSON), then write the summaries to the graph. The
model, preprocessing, data root and artifacts default to what the artifacts recorded
(``run.json``; the folders the graph's Class nodes name); options override them and a
model whose weights differ from an artifact's is refused. Results are on disk before the
database is contacted: if it is down, only the graph summary is missing (exit code 4).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from .options import connect_from_options, db_options, echo_err, handle_errors, model_options, model_options_from, quiet_option

__all__ = ["evaluate"]

_CHOICES = ("optimality", "fidelity", "correlation", "all")


def _parse_ints(value: str, name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got '{value}'", param_hint=name) from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"expected positive integers, got '{value}'", param_hint=name)
    return out


@click.command()
@click.argument("experiment", type=click.Choice(_CHOICES))
@click.argument("artifact_args", metavar="[ARTIFACTS]...", nargs=-1, type=click.Path(path_type=Path))
@click.option("--artifacts", "artifact_opts", multiple=True, type=click.Path(path_type=Path), help="Artifact directory (or a folder of them); repeatable [default: NEURFLOW_ARTIFACTS, ./artifacts, or the folders the graph's classes were loaded from].")
@model_options(default_model=None)
@click.option("--data", type=click.Path(path_type=Path), default=None, help="The ImageFolder root the artifacts were computed from [default: as recorded in their run.json].")
@click.option("--samples", type=int, default=5, show_default=True, help="Target neurons sampled per layer transition (optimality, correlation).")
@click.option("--random-sets", type=int, default=100, show_default=True, help="Random neuron sets per target and tau (optimality, Figure 4).")
@click.option("--taus", default="4,8,16", show_default=True, help="Core-set sizes, capped at the circuit's tau.")
@click.option("--fidelity-draws", type=int, default=10, show_default=True, help="Random neuron sets per fidelity cell (Figure 5).")
@click.option("--max-cardinality", type=int, default=50, show_default=True, help="Largest combination size (correlation, Figure 6).")
@click.option("--combinations", type=int, default=100, show_default=True, help="Random combinations per cardinality and target (correlation).")
@click.option("--other-images", type=int, default=0, show_default=True, help="Also measure fidelity on up to N images of every other class.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--layers", default=None, help="Evaluate only these layers (comma-separated layers of core neurons; default: every layer below the logit).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Patches per prefix forward pass.")
@click.option("--max-batch", type=int, default=512, show_default=True, help="Inputs per segment call (many knock-outs per call).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (default: <artifact>/eval/<timestamp>/).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="json: print the summary as JSON on stdout.")
@click.option("--no-plots", is_flag=True, help="Do not draw the PNG plots.")
@click.option("--no-graph", is_flag=True, help="Do not write the summary to the graph.")
@db_options
@quiet_option
@handle_errors
def evaluate(experiment: str, artifact_args: tuple[Path, ...], artifact_opts: tuple[Path, ...], **kw: Any) -> None:
    """Faithfulness experiments of Section 4 on circuit artifacts.

    EXPERIMENT is optimality (Figure 4), fidelity (Figure 5), correlation (Figure 6) or all.
    """
    from neurflow.evaluation import EXPERIMENTS, EvaluationConfig

    from ..evaluating import evaluate_artifact
    from ..graph.writer import write_evaluation_summary
    from ..session import locate_artifacts, open_artifacts

    opts = model_options_from(kw)
    try:
        config = EvaluationConfig(
            samples=kw["samples"],
            random_sets=kw["random_sets"],
            taus=_parse_ints(kw["taus"], "--taus"),
            fidelity_draws=kw["fidelity_draws"],
            max_cardinality=kw["max_cardinality"],
            combinations=kw["combinations"],
            seed=kw["seed"],
            layers=tuple(x.strip() for x in kw["layers"].split(",") if x.strip()) if kw["layers"] else None,
            batch_size=kw["batch_size"],
            max_batch=kw["max_batch"],
        )
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if kw["other_images"] < 0:
        raise InputError("--other-images must be >= 0")
    experiments = EXPERIMENTS if experiment == "all" else (experiment,)
    paths = list(artifact_args) + list(artifact_opts)
    if paths:
        directories = locate_artifacts(paths)
    elif kw["no_graph"]:
        directories = locate_artifacts([], hint="positional or --artifacts")
    else:
        with connect_from_options(kw["uri"], kw["user"], kw["password"], kw["database"]) as conn:
            directories = locate_artifacts([], conn, hint="positional or --artifacts")
    arts = open_artifacts(directories, opts, kw["data"])
    mine = [d for d in directories if any(d == other for _, other in arts.circuits.values())]
    log = echo_err
    docs, summaries = [], []
    for directory in mine:
        doc, summary = evaluate_artifact(directory, arts, experiments, config, other_images=kw["other_images"], out=kw["out"],
                                         multiple=len(mine) > 1, quiet=kw["quiet"], draw_plots=not kw["no_plots"])
        docs.append(doc)
        summaries.append(summary)
        if kw["fmt"] == "table":
            _print_table(doc)
        else:
            log(f"evaluate: {doc['class']['name']}: results in {doc['run_dir']}")
    if kw["fmt"] == "json":
        click.echo(json.dumps(docs if len(docs) > 1 else docs[0], indent=1, allow_nan=False))
    if not kw["no_graph"]:
        with connect_from_options(kw["uri"], kw["user"], kw["password"], kw["database"]) as conn:
            for cls_uid, props in summaries:
                if write_evaluation_summary(conn.driver, conn.database, cls_uid, props):
                    log(f"graph: evaluation of {cls_uid} written to its Class and Run nodes")
                else:
                    log(f"graph: class {cls_uid} is not in the graph (run 'neurflow load' first); summary not written")


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _print_table(doc: dict) -> None:
    echo = click.echo
    echo(f"{doc['model']} class {doc['class']['index']} {doc['class']['name']}  ->  {doc['run_dir']}")
    if "optimality" in doc:
        echo("  optimality (Figure 4): L(random) - L(core), 99% CI, fraction of random sets with a smaller loss")
        echo(f"    {'layer':<24} {'tau':>4} {'n':>6} {'mean diff':>10} {'99% CI':>20} {'random better':>14}")
        for c in doc["optimality"]["cells"]:
            ci = f"[{_fmt(c['ci_low'], '+.3f')}, {_fmt(c['ci_high'], '+.3f')}]"
            echo(f"    {c['upper_layer'] + ' -> ' + c['layer']:<24} {c['tau']:>4} {c['n']:>6} {_fmt(c['mean_diff'], '+.3f'):>10} {ci:>20} {_fmt(c['frac_random_better']):>14}")
        p = doc["optimality"]["pooled"]
        ci = f"[{_fmt(p['ci_low'], '+.3f')}, {_fmt(p['ci_high'], '+.3f')}]"
        echo(f"    {'pooled':<24} {'':>4} {'':>6} {_fmt(p['mean_diff'], '+.3f'):>10} {ci:>20} {_fmt(p['frac_random_better']):>14}")
    if "fidelity" in doc:
        fd = doc["fidelity"]
        echo(f"  fidelity (Figure 5): accuracy / unmasked accuracy ({_fmt(fd['base_accuracy'])} on {fd['n_images']} class images)")
        echo(f"    {'tau':>4} {'layer':<16} {'scope':<7} {'neurons':<14} {'mask core':>10} {'mask rand':>10} {'keep core':>10} {'keep rand':>10}")
        for c in fd["cells"]:
            n = ",".join(str(v) for v in c["n_neurons"])
            echo(
                f"    {c['tau']:>4} {c['layer']:<16} {c['scope']:<7} {n:<14} {_fmt(c['mask_core']):>10} {_fmt(c['mask_random']):>10} "
                f"{_fmt(c['retain_core']):>10} {_fmt(c['retain_random']):>10}"
            )
    if "correlation" in doc:
        cr = doc["correlation"]
        echo("  correlation (Figure 6): sum |IG| of a combination vs its knock-out loss")
        echo(f"    {'layer':<24} {'m max':>6} {'spearman m=1':>13} {'m<=5':>7} {'all m':>7}")
        for c in cr["layers"]:
            echo(f"    {c['upper_layer'] + ' -> ' + c['layer']:<24} {c['max_cardinality']:>6} {_fmt(c['spearman_m1'], '+.3f'):>13} {_fmt(c['spearman_m_le_5'], '+.3f'):>7} {_fmt(c['spearman_mean'], '+.3f'):>7}")
    s = doc["summary"]
    faithful = {True: "yes", False: "NO", None: "-"}[s["faithful"]]
    echo(
        f"  faithful: {faithful}  (optimality diff {_fmt(s['optimality_diff'], '+.3f')}, CI low {_fmt(s['optimality_ci_low'], '+.3f')}; "
        f"mask core {_fmt(s['fidelity_mask_core'])} vs random {_fmt(s['fidelity_mask_random'])}; spearman {_fmt(s['correlation_spearman'], '+.3f')})"
    )


