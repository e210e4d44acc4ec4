"""Faithfulness evaluation of circuit artifacts (Section 4): run, record, summarise.

The service behind ``neurflow evaluate``: for each artifact it rebuilds the class images
D_c from the data root (the artifact stores image ids relative to it), checks them against
the artifact's fingerprints, runs :func:`neurflow.evaluation.evaluate_circuit`, and writes
``evaluation.json``, ``summary.json``, ``correlation.npz`` and the PNG plots to a run
directory (``<artifact>/eval/<UTC timestamp>/`` or the given one). The summary set on the
Class and Run nodes (:func:`write_summary`; parameters only) is ``eval_faithful`` (the rule
of :func:`neurflow.evaluation.summarize`), ``eval_optimality_diff``,
``eval_optimality_ci_low``, ``eval_fidelity_mask_core``, ``eval_fidelity_mask_random``,
``eval_fidelity_retain_core``, ``eval_fidelity_retain_random``,
``eval_correlation_spearman``, ``eval_correlation_pearson``, ``eval_experiments``,
``eval_seed``, ``eval_dir`` and ``evaluated_at``. Results are on disk before the database
is contacted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from neurflow.artifact import write_json_atomic

from .errors import ArtifactError, InputError
from .session import ArtifactSet

__all__ = ["evaluate_artifact", "summary_doc"]

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


def evaluate_artifact(directory: Path, arts: ArtifactSet, experiments: Sequence[str], config: Any, *, other_images: int = 0,
                      out: Path | None = None, multiple: bool = False, quiet: bool = False, draw_plots: bool = True) -> tuple[dict, tuple[str, dict]]:
    """Run the experiments on one artifact and write ``evaluation.json``, ``summary.json``,
    ``correlation.npz`` and the plots to its run directory.

    Returns:
        The summary document and (Class uid, the properties for the graph).
    """
    import torch

    from neurflow.evaluation import EvaluationInputError, evaluate_circuit, to_jsonable, verify_inputs

    from .graph.schema import class_uid, model_uid
    from .images import load_class_images
    from .pipeline import read_artifact
    from .plots import evaluation_plots
    from .progress import bar_factory

    session = arts.session
    circuit, run, _ = read_artifact(directory)
    spec, model, device = session.spec, session.module, session.device
    try:
        verify_inputs(circuit, model)
    except EvaluationInputError as exc:
        raise ArtifactError(f"{directory}: {exc}") from None
    data = session.data(arts.data)
    if data.folder_of(circuit.class_index) is None:
        raise ArtifactError(f"{directory}: class {circuit.class_index} ({circuit.class_name}) has no image folder under '{arts.data}'")
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
    if other_images > 0 and "fidelity" in experiments:
        extra = []
        for other in sorted(set(data.index_of.values()) - {circuit.class_index}):
            t = load_class_images(data, other, spec.preprocess).tensor[:other_images]
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
            progress=bar_factory(quiet),
            check=False,  # verified above, with messages that name the options
        )
    except ValueError as exc:  # e.g. --layers that this circuit does not have
        raise InputError(f"{directory}: {exc}") from None
    evaluated_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    run_dir = _run_dir(directory, out, multiple, started)
    full = {
        "kind": "neurflow.evaluation",
        "artifact": str(directory.resolve()),
        "data": str(Path(arts.data).resolve()),
        "model": {"name": spec.name, "weights": spec.weights, "fingerprint": circuit.model_fingerprint},
        "device": str(device),
        "evaluated_at": evaluated_at,
        **to_jsonable(ev),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "evaluation.json", full)
    if ev.correlation is not None:
        _save_correlation_arrays(ev.correlation, run_dir / "correlation.npz")
    plots = [] if not draw_plots else evaluation_plots(ev, run_dir)
    doc = summary_doc(ev, run_dir=run_dir, artifact=directory, evaluated_at=evaluated_at, plots=plots)
    write_json_atomic(run_dir / "summary.json", doc)
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


_OPTIMALITY_CELL = ("upper_layer", "layer", "tau", "n_targets", "n", "mean_diff", "ci_low", "ci_high", "frac_random_better")
_FIDELITY_CELL = ("tau", "layer", "scope", "n_neurons", "mask_core", "mask_random", "retain_core", "retain_random", "other_mask_core", "other_mask_random")


def _pick(cell: Any, names: Sequence[str]) -> dict[str, Any]:
    """The named fields of a result cell as JSON values (tuples as lists, non-finite floats as null)."""
    return {n: list(v) if isinstance(v, tuple) else _f(v) if isinstance(v, float) else v for n in names for v in (getattr(cell, n),)}


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
            "cells": [_pick(c, _OPTIMALITY_CELL) for c in o.cells],
        }
    if ev.fidelity is not None:
        fd = ev.fidelity
        doc["fidelity"] = {
            "base_accuracy": _f(fd.base_accuracy),
            "base_other_accuracy": _f(fd.base_other_accuracy),
            "n_images": fd.n_images,
            "n_other": fd.n_other,
            "cells": [_pick(c, _FIDELITY_CELL) for c in fd.cells],
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
