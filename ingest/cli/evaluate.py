"""``neurflow evaluate optimality|fidelity|correlation|all``: the Section 4 experiments.

The command only wires inputs and outputs; the experiments are
:func:`neurflow.evaluation.evaluate_circuit`. For every artifact it

1. reads the circuit, loads the model like ``neurflow compute`` (``--model/--weights`` and
   the preprocessing options) and refuses other weights than the artifact's;
2. rebuilds the class images D_c from ``--data`` (the artifact stores image ids relative to
   the data root and the patch grid) and refuses them when the data fingerprint differs;
3. runs the experiments, writes ``evaluation.json`` and PNG plots to a run directory
   (``<artifact>/eval/<UTC timestamp>/`` or ``--out``), prints a table (or, with
   ``--format json``, the same summary as JSON on stdout);
4. unless ``--no-graph``, sets the summary on the Class node and on its Run node
   (``(Class)-[:BUILT_BY]->(Run)``), parameters only: ``eval_faithful`` (the rule of
   :func:`neurflow.evaluation.summarize`: the pooled optimality difference is positive with
   its 99% interval above zero, and masking the core neurons lowers the class accuracy
   more than masking random ones; written only when both experiments ran),
   ``eval_optimality_diff``, ``eval_optimality_ci_low``, ``eval_fidelity_mask_core``,
   ``eval_fidelity_mask_random``, ``eval_fidelity_retain_core``,
   ``eval_fidelity_retain_random``, ``eval_correlation_spearman``,
   ``eval_correlation_pearson``, ``eval_experiments``, ``eval_seed``, ``eval_dir`` and
   ``evaluated_at``. Properties of experiments that did not run (or gave no number) are
   left as they were. A class that is not in the graph is reported and skipped.

Results are on disk before the database is contacted: if it is down, only the graph
summary is missing (exit code 4).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from .cli_common import connect_from_options, db_options, echo_err, handle_errors, parse_floats
from .errors import ArtifactError, DatabaseError, InputError

__all__ = ["evaluate", "CLASS_EVAL", "RUN_EVAL", "CLASS_EXISTS", "write_summary", "summary_doc"]

# Parameters only: $cls (the Class uid) and $props (a map of primitive values).
CLASS_EXISTS = "MATCH (c:Class {uid: $cls}) RETURN count(c) AS n"
CLASS_EVAL = "MATCH (c:Class {uid: $cls}) SET c += $props"
RUN_EVAL = "MATCH (:Class {uid: $cls})-[:BUILT_BY]->(run:Run) SET run += $props"

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
@click.option("--artifacts", "artifact_opts", multiple=True, type=click.Path(path_type=Path), help="Artifact directory (or a folder of them); repeatable.")
@click.option("--model", default=None, help="torchvision model name, 'demo', or path/to/file.py:factory (default: the artifact's model name).")
@click.option("--weights", default=None, help="torchvision weights name or a state_dict file, as given to 'neurflow compute'.")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="The ImageFolder root the artifacts were computed from.")
@click.option("--demo-root", type=click.Path(path_type=Path), default=Path(".neurflow/demo"), show_default=True, help="Where the demo model lives (--model demo).")
@click.option("--input-size", type=int, default=None, help="Model input side, as for 'neurflow compute'.")
@click.option("--mean", default=None, help="Normalisation mean, as for 'neurflow compute'.")
@click.option("--std", default=None, help="Normalisation std, as for 'neurflow compute'.")
@click.option("--no-normalize", is_flag=True, help="Feed [0,1] pixels, as for 'neurflow compute'.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
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
@click.option("--quiet", is_flag=True, help="No progress bars.")
@handle_errors
def evaluate(experiment: str, artifact_args: tuple[Path, ...], artifact_opts: tuple[Path, ...], **kw: Any) -> None:
    """Faithfulness experiments of Section 4 on circuit artifacts.

    EXPERIMENT is optimality (Figure 4), fidelity (Figure 5), correlation (Figure 6) or all.
    """
    from neurflow.evaluation import EXPERIMENTS, EvaluationConfig

    from .pipeline import find_artifacts, resolve_device

    paths = list(artifact_args) + list(artifact_opts)
    if not paths:
        raise InputError("give at least one artifact directory (positional or --artifacts)")
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
    directories = find_artifacts(paths)
    device = resolve_device(kw["device"])
    log = echo_err
    docs, summaries = [], []
    models: dict[tuple, Any] = {}
    for directory in directories:
        doc, summary = _evaluate_one(directory, experiments, config, device, models, kw, multiple=len(directories) > 1)
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
                if write_summary(conn.driver, conn.database, cls_uid, props):
                    log(f"graph: evaluation of {cls_uid} written to its Class and Run nodes")
                else:
                    log(f"graph: class {cls_uid} is not in the graph (run 'neurflow load' first); summary not written")


def _in_artifact_order(imgs, ids: Sequence[str], root: Path):
    """The rows of ``imgs`` (a ClassImages) for the artifact's image ids, in their order."""
    import torch

    row = {i: r for r, i in enumerate(imgs.ids)}
    missing = [i for i in ids if i not in row]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise ArtifactError(
            f"{len(missing)} image(s) of the artifact are missing or unreadable under '{root}' ({shown}); "
            "pass the --data root the artifact was computed from"
        )
    return imgs.tensor[torch.as_tensor([row[i] for i in ids], dtype=torch.long)]


def _evaluate_one(directory: Path, experiments: Sequence[str], config, device, models: dict, kw: dict, *, multiple: bool) -> tuple[dict, tuple[str, dict]]:
    import torch

    from neurflow.evaluation import EvaluationInputError, evaluate_circuit, to_jsonable, verify_inputs

    from .graph_rows import class_uid, model_uid
    from .images import load_class_images, scan_data
    from .models import load_model
    from .pipeline import read_artifact
    from .progress import bar_factory

    circuit, run, _ = read_artifact(directory)
    model_name = kw["model"] or circuit.model_name
    key = (model_name, kw["weights"], kw["input_size"], kw["mean"], kw["std"], kw["no_normalize"])
    if key not in models:
        try:
            spec = load_model(
                model_name,
                kw["weights"],
                input_size=kw["input_size"],
                mean=parse_floats(kw["mean"], "--mean"),
                std=parse_floats(kw["std"], "--std"),
                normalize=not kw["no_normalize"],
                demo_root=kw["demo_root"],
            )
        except InputError as exc:
            if kw["model"]:
                raise
            raise InputError(f"{exc} (the artifact's model name '{model_name}' was used; pass --model and --weights as for 'neurflow compute')") from None
        spec.module.to(device)
        models[key] = spec
    spec = models[key]
    model = spec.module
    try:
        verify_inputs(circuit, model)
    except EvaluationInputError as exc:
        raise ArtifactError(f"{directory}: {exc}") from None
    with torch.no_grad():
        size = spec.preprocess.input_size
        num_classes = int(model(torch.zeros(1, 3, size, size, device=device)).shape[1])
    data = scan_data(kw["data"], spec.categories, num_classes)
    if data.folder_of(circuit.class_index) is None:
        raise ArtifactError(f"{directory}: class {circuit.class_index} ({circuit.class_name}) has no image folder under '{kw['data']}'")
    class_images = load_class_images(data, circuit.class_index, spec.preprocess)
    images = _in_artifact_order(class_images, circuit.image_ids, data.root)
    try:
        verify_inputs(circuit, model, images)
    except EvaluationInputError as exc:
        hint = ""
        if run and run.get("preprocess"):
            hint = f" (the artifact was computed with preprocessing {run['preprocess']}; yours is {json.dumps(spec.preprocess.describe())})"
        raise ArtifactError(f"{directory}: {exc}{hint}") from None
    # fidelity: every readable image of the class folder (also those the model misclassifies)
    eval_images, labels = class_images.tensor, [circuit.class_index] * len(class_images.ids)
    if kw["other_images"] > 0 and "fidelity" in experiments:
        extra = []
        for other in sorted(set(data.index_of.values()) - {circuit.class_index}):
            t = load_class_images(data, other, spec.preprocess).tensor[: kw["other_images"]]
            extra.append(t)
            labels += [other] * len(t)
        eval_images = torch.cat([eval_images, *extra])
    started = time.time()
    try:
        ev = evaluate_circuit(
            model,
            circuit,
            images.to(device),
            experiments=experiments,
            eval_images=eval_images.to(device),
            eval_labels=torch.as_tensor(labels, dtype=torch.long),
            config=config,
            progress=bar_factory(kw["quiet"]),
            check=False,  # verified above, with messages that name the options
        )
    except ValueError as exc:  # e.g. --layers that this circuit does not have
        raise InputError(f"{directory}: {exc}") from None
    evaluated_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    run_dir = _run_dir(directory, kw["out"], multiple, started)
    full = {
        "kind": "neurflow.evaluation",
        "artifact": str(directory.resolve()),
        "data": str(Path(kw["data"]).resolve()),
        "model": {"name": spec.name, "weights": spec.weights, "fingerprint": circuit.model_fingerprint},
        "device": str(device),
        "evaluated_at": evaluated_at,
        **to_jsonable(ev),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "evaluation.json").write_text(json.dumps(full, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    if ev.correlation is not None:
        _save_correlation_arrays(ev.correlation, run_dir / "correlation.npz")
    plots = [] if kw["no_plots"] else _plots(ev, run_dir)
    doc = summary_doc(ev, run_dir=run_dir, artifact=directory, evaluated_at=evaluated_at, plots=plots)
    (run_dir / "summary.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    props: dict[str, Any] = {**ev.summary.properties(), "evaluated_at": evaluated_at, "eval_experiments": list(experiments), "eval_seed": config.seed, "eval_dir": str(run_dir.resolve())}
    cls = class_uid(model_uid(circuit.model_name, circuit.model_fingerprint), circuit.class_index)
    return doc, (cls, props)


def _run_dir(directory: Path, out: Path | None, multiple: bool, started: float) -> Path:
    if out is not None:
        return Path(out) / directory.name if multiple else Path(out)
    base = directory / "eval" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


def _save_correlation_arrays(cor, path: Path) -> None:
    import numpy as np

    arrays = {}
    for i, t in enumerate(cor.targets):
        arrays[f"{i}:importance"] = t.importance
        arrays[f"{i}:loss"] = t.loss
        arrays[f"{i}:cardinalities"] = np.asarray(t.cardinalities)
    arrays["targets"] = np.asarray([t.target.key for t in cor.targets])
    np.savez_compressed(path, **arrays)


def _f(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def summary_doc(ev, *, run_dir: Path, artifact: Path, evaluated_at: str, plots: Sequence[str] = ()) -> dict:
    """What the table shows and ``--format json`` prints, for one artifact."""
    doc: dict[str, Any] = {
        "artifact": str(artifact),
        "run_dir": str(run_dir),
        "class": {"index": ev.class_index, "name": ev.class_name},
        "model": ev.model_name,
        "evaluated_at": evaluated_at,
        "config": {**asdict(ev.config), "taus": list(ev.config.taus)},
        "seconds": {k: round(v, 3) for k, v in ev.seconds.items()},
        "summary": {k: _f(v) for k, v in asdict(ev.summary).items()},
        "plots": list(plots),
    }
    if ev.optimality is not None:
        o = ev.optimality
        doc["optimality"] = {
            "pooled": {"mean_diff": _f(o.pooled_mean_diff), "ci_low": _f(o.pooled_ci_low), "ci_high": _f(o.pooled_ci_high), "frac_random_better": _f(o.pooled_frac_random_better)},
            "cells": [
                {
                    "upper_layer": c.upper_layer,
                    "layer": c.layer,
                    "tau": c.tau,
                    "n_targets": c.n_targets,
                    "n": c.n,
                    "mean_diff": _f(c.mean_diff),
                    "ci_low": _f(c.ci_low),
                    "ci_high": _f(c.ci_high),
                    "frac_random_better": _f(c.frac_random_better),
                }
                for c in o.cells
            ],
        }
    if ev.fidelity is not None:
        fd = ev.fidelity
        doc["fidelity"] = {
            "base_accuracy": _f(fd.base_accuracy),
            "base_other_accuracy": _f(fd.base_other_accuracy),
            "n_images": fd.n_images,
            "n_other": fd.n_other,
            "cells": [
                {
                    "tau": c.tau,
                    "layer": c.layer,
                    "scope": c.scope,
                    "n_neurons": list(c.n_neurons),
                    "mask_core": _f(c.mask_core),
                    "mask_random": _f(c.mask_random),
                    "retain_core": _f(c.retain_core),
                    "retain_random": _f(c.retain_random),
                    "other_mask_core": _f(c.other_mask_core),
                    "other_mask_random": _f(c.other_mask_random),
                }
                for c in fd.cells
            ],
        }
    if ev.correlation is not None:
        cr = ev.correlation
        layers = []
        for lower in dict.fromkeys(c.layer for c in cr.cells):
            cells = [c for c in cr.cells if c.layer == lower]
            one = [c for c in cells if c.cardinality == 1]
            small = [c.spearman for c in cells if c.cardinality <= 5 and math.isfinite(c.spearman)]
            every = [c.spearman for c in cells if math.isfinite(c.spearman)]
            layers.append(
                {
                    "upper_layer": cells[0].upper_layer,
                    "layer": lower,
                    "max_cardinality": max(c.cardinality for c in cells),
                    "spearman_m1": _f(one[0].spearman) if one else None,
                    "pearson_m1": _f(one[0].pearson) if one else None,
                    "spearman_m_le_5": _f(sum(small) / len(small)) if small else None,
                    "spearman_mean": _f(sum(every) / len(every)) if every else None,
                }
            )
        doc["correlation"] = {"mean_pearson": _f(cr.mean_pearson), "mean_spearman": _f(cr.mean_spearman), "layers": layers}
    return doc


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


def _plots(ev, run_dir: Path) -> list[str]:
    """Figures 4-6 as PNG files (matplotlib's Agg canvas; no global backend is touched)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []

    def save(fig: Figure, name: str) -> None:
        FigureCanvasAgg(fig)
        fig.tight_layout()
        fig.savefig(run_dir / name, dpi=110)
        written.append(name)

    if ev.optimality is not None and ev.optimality.cells:
        cells = ev.optimality.cells
        layers = list(dict.fromkeys(c.layer for c in cells))
        taus = sorted({c.tau for c in cells})
        fig = Figure(figsize=(max(5.0, 1.6 * len(layers) + 2), 4.2))
        ax = fig.add_subplot(111)
        ax2 = ax.twinx()
        width = 0.8 / len(taus)
        blues = ["#9ecae1", "#4292c6", "#08519c", "#08306b"]
        pinks = ["#fcc5c0", "#f768a1", "#ae017e", "#49006a"]
        for j, tau in enumerate(taus):
            xs, ys, lo, hi, fr = [], [], [], [], []
            for i, layer in enumerate(layers):
                c = next((c for c in cells if c.layer == layer and c.tau == tau), None)
                if c is None:
                    continue
                xs.append(i + (j - (len(taus) - 1) / 2) * width)
                ys.append(c.mean_diff)
                lo.append(c.mean_diff - c.ci_low if np.isfinite(c.ci_low) else 0.0)
                hi.append(c.ci_high - c.mean_diff if np.isfinite(c.ci_high) else 0.0)
                fr.append(c.frac_random_better)
            ax.bar(xs, ys, width * 0.9, yerr=[lo, hi], capsize=3, color=blues[j % 4], label=f"mean diff, tau={tau}")
            ax2.bar(xs, fr, width * 0.45, color=pinks[j % 4], alpha=0.9, label=f"random better, tau={tau}")
        ax.set_xticks(range(len(layers)), layers)
        ax.set_ylabel("L(random) - L(core), 99% CI")
        ax2.set_ylabel("fraction of random sets with smaller loss")
        ax2.set_ylim(0, 1)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"Optimality (Fig. 4): {ev.model_name} / {ev.class_name}")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
        save(fig, "optimality.png")

    if ev.fidelity is not None and ev.fidelity.cells:
        cells = ev.fidelity.cells
        layers = list(dict.fromkeys(c.layer for c in cells))
        taus = sorted({c.tau for c in cells})
        fig = Figure(figsize=(10, 7))
        for r, op in enumerate(("mask", "retain")):
            for s, scope in enumerate(("single", "multi")):
                ax = fig.add_subplot(2, 2, 2 * r + s + 1)
                for j, tau in enumerate(taus):
                    pts = [(layers.index(c.layer), c) for c in cells if c.tau == tau and c.scope == scope]
                    pts.sort(key=lambda p: p[0])
                    if not pts:
                        continue
                    x = [p[0] for p in pts]
                    ax.plot(x, [getattr(c, f"{op}_core") for _, c in pts], "-o", color=f"C{j}", label=f"core, tau={tau}")
                    ax.plot(x, [getattr(c, f"{op}_random") for _, c in pts], "--s", color=f"C{j}", alpha=0.6, label=f"random, tau={tau}")
                ax.set_xticks(range(len(layers)), layers, rotation=30, fontsize=8)
                ax.set_ylim(-0.05, 1.05)
                ax.set_title(f"{'masking' if op == 'mask' else 'retaining'}, {'single layer' if scope == 'single' else 'classifier down to layer'}", fontsize=9)
                ax.set_ylabel("accuracy / unmasked")
                ax.legend(fontsize=6)
        fig.suptitle(f"Fidelity (Fig. 5): {ev.model_name} / {ev.class_name}")
        save(fig, "fidelity.png")

    if ev.correlation is not None and ev.correlation.cells:
        cells = ev.correlation.cells
        fig = Figure(figsize=(10, 4))
        for i, name in enumerate(("pearson", "spearman")):
            ax = fig.add_subplot(1, 2, i + 1)
            for j, layer in enumerate(dict.fromkeys(c.layer for c in cells)):
                pts = [c for c in cells if c.layer == layer]
                ax.plot([c.cardinality for c in pts], [getattr(c, name) for c in pts], "-", color=f"C{j}", label=layer)
            ax.set_xlabel("cardinality of the combination")
            ax.set_ylabel(f"{name} correlation")
            ax.set_ylim(-1.05, 1.05)
            ax.axhline(0, color="black", lw=0.6)
            ax.legend(fontsize=7)
        fig.suptitle(f"Correlation of |IG| with knock-out loss (Fig. 6): {ev.model_name} / {ev.class_name}")
        save(fig, "correlation.png")
    return written


def write_summary(driver, database: str | None, cls_uid: str, props: dict) -> bool:
    """Set ``props`` on the Class node ``cls_uid`` and on its Run node.

    Returns:
        False (and writes nothing) when the class is not in the graph.

    Raises:
        DatabaseError: the database failed.
    """
    import neo4j
    from neo4j.exceptions import Neo4jError, ServiceUnavailable, SessionExpired

    from .errors import DatabaseUnavailable
    from .graph_writer import run_write

    try:
        records, _, _ = driver.execute_query(CLASS_EXISTS, parameters_={"cls": cls_uid}, database_=database, routing_=neo4j.RoutingControl.READ)
    except (ServiceUnavailable, SessionExpired) as exc:
        raise DatabaseUnavailable(f"the graph database became unreachable: {type(exc).__name__}") from exc
    except Neo4jError as exc:
        raise DatabaseError(f"reading class {cls_uid} failed ({exc.code}): {exc.message}") from exc
    if not records or int(records[0]["n"]) == 0:
        return False
    run_write(driver, database, CLASS_EVAL, cls=cls_uid, props=props)
    run_write(driver, database, RUN_EVAL, cls=cls_uid, props=props)
    return True
