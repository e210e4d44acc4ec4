"""``neurflow label``: describe neuron groups and their relations in words (paper Section 5.2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .options import connect_from_options, db_options, echo_err, handle_errors

__all__ = ["label", "select_artifacts"]


def select_artifacts(out: Path, classes: str) -> list[Path]:
    """The artifact folders under ``out`` of the requested classes (``all``, or names and
    indices separated by commas).

    Raises:
        InputError: no artifacts, or a requested class has none.
    """
    from ..errors import InputError
    from ..pipeline import find_artifacts

    dirs = find_artifacts([out])
    if classes.strip() == "all":
        return dirs
    wanted = [c.strip() for c in classes.split(",") if c.strip()]
    if not wanted:
        raise InputError("no classes given; use --classes all, names or indices")
    chosen, found = [], set()
    for d in dirs:
        try:
            cls = json.loads((d / "circuit.json").read_text(encoding="utf-8"))["class"]
        except (OSError, ValueError, KeyError):
            continue
        hit = {str(cls["index"]), str(cls["name"])} & set(wanted)
        if hit:
            chosen.append(d)
            found |= hit
    missing = [w for w in wanted if w not in found]
    if missing:
        raise InputError(f"no artifact under {out} for class(es) {', '.join(missing)}; compute them first")
    return chosen


@click.command()
@click.option("--classes", default="all", show_default=True, help="Classes to label: all, or names/indices separated by commas.")
@click.option("--labeller", type=click.Choice(["annotations", "openai"]), required=True, help="Who writes the labels.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("artifacts"), show_default=True, envvar="NEURFLOW_ARTIFACTS", help="Artifact directory of the circuits.")
@click.option("--layers", default=None, help="Only groups of these layers (comma-separated); default every layer.")
@click.option("--force", is_flag=True, help="Label again even when stored labels of the same labeller exist.")
@click.option("--annotations", "annotations_dir", type=click.Path(path_type=Path), default=None,
              help="annotations: folder with concepts.json and one label-map PNG per image (README, 'Concept labels'); a demo world (or demo root) is converted to that format.")
@click.option("--threshold", type=float, default=None, help="annotations: below this pixel share of the best concept a group is 'mixed' [default 0.5].")
@click.option("--base-url", envvar="NEURFLOW_LABEL_BASE_URL", default="https://api.openai.com/v1", show_default=True, help="openai: the chat-completions API root [env NEURFLOW_LABEL_BASE_URL].")
@click.option("--model", "llm", envvar="NEURFLOW_LABEL_MODEL", default=None, help="openai: the vision model's name on that server [env NEURFLOW_LABEL_MODEL].")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, help="openai: the environment variable holding the key (never logged or stored).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="openai: seconds per request.")
@click.option("--retries", type=int, default=4, show_default=True, help="openai: retries after HTTP 429/5xx or a timeout (exponential backoff).")
@click.option("--max-requests", type=int, default=None, help="openai: most requests this run sends (retries included).")
@click.option("--dry-run", is_flag=True, help="openai: print how many requests the run would send, send nothing.")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None, help="openai: answer cache folder [default <NEURFLOW_HOME>/label-cache].")
@click.option("--concepts/--no-concepts", default=True, show_default=True, help="Also label the concept atlas's Concepts (all artifacts of a model under --out make its atlas).")
@click.option("--no-graph", is_flag=True, help="Only store the labels beside the artifacts; write nothing to the graph.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@db_options
@handle_errors
def label(classes, labeller, out, layers, force, annotations_dir, threshold, base_url, llm, api_key_env, timeout, retries, max_requests, dry_run, cache_dir, concepts, no_graph, fmt, uri, user, password, database) -> None:
    """Label the neuron groups of loaded classes and the FLOWS_TO relations between them.

    Labels are stored beside each artifact (labels.json, tied to the artifact's checksum),
    so a re-run reuses them and `neurflow load` of an unchanged artifact restores them; then
    they are written to the graph (NeuronGroup label, description, label_score,
    label_source, labelled_at; FLOWS_TO relation).
    """
    from ..errors import InputError
    from ..labelling import MIXED_THRESHOLD, AnnotationsLabeller, OpenAILabeller, demo_annotations, label_classes, plan_requests, read_annotations, write_labels

    layer_list = tuple(x.strip() for x in layers.split(",") if x.strip()) if layers else None
    if max_requests is not None and max_requests < 1:
        raise click.BadParameter("must be >= 1", param_hint="--max-requests")
    chosen: Any
    if labeller == "annotations":
        if annotations_dir is None:
            raise InputError("--labeller annotations needs --annotations DIR (concepts.json + label maps, or a demo world)")
        t = MIXED_THRESHOLD if threshold is None else threshold
        if (annotations_dir / "world.json").is_file() or (annotations_dir / "world" / "world.json").is_file():
            chosen = demo_annotations(annotations_dir, threshold=t)
        else:
            chosen = AnnotationsLabeller(read_annotations(annotations_dir), t)
    else:
        if not llm:
            raise InputError("--labeller openai needs --model NAME (the vision model on the server), or NEURFLOW_LABEL_MODEL")
        chosen = OpenAILabeller(base_url, llm, api_key_env=api_key_env, timeout=timeout, retries=retries, max_requests=max_requests, cache_dir=cache_dir, dry_run=dry_run)
    dirs = select_artifacts(out, classes)
    if dry_run:
        counts = plan_requests(dirs, chosen, layers=layer_list, force=force)
        if concepts and hasattr(chosen, "planned"):
            from ..labelling.concepts import label_concepts

            chosen.planned = 0
            label_concepts([out], chosen, force=force)
            counts["atlas concepts"] = chosen.planned
        for name, n in counts.items():
            click.echo(f"{name}: {n} request(s)")
        click.echo(f"dry run: {sum(counts.values())} request(s) would be sent to {getattr(chosen, 'base_url', 'nobody')}; nothing sent")
        return
    outcomes = label_classes(dirs, chosen, layers=layer_list, force=force, log=echo_err)
    concept_labels = {}
    if concepts:
        from ..labelling.concepts import label_concepts

        concept_labels = label_concepts([out], chosen, force=force, log=echo_err)
    sent = getattr(chosen, "sent", None)
    if sent is not None:
        echo_err(f"label: {sent} request(s) sent, {chosen.cache_hits} answer(s) from the cache")
    if not no_graph:
        with connect_from_options(uri, user, password, database) as conn:
            write_labels(conn, [o.directory for o in outcomes], log=echo_err)
            if concept_labels:
                from ..labelling.concepts import write_concept_labels_to_graph

                write_concept_labels_to_graph(conn, concept_labels)
    if fmt == "json":
        click.echo(json.dumps([_outcome_json(o) for o in outcomes], indent=1))
        return
    for o in outcomes:
        click.echo(f"class {o.class_name}: {o.status}, {o.n_groups} groups, {o.n_relations} relations ({o.labels.source if o.labels else '-'})")
        order = json.loads((o.directory / "circuit.json").read_text(encoding="utf-8"))["model"]["layers"]  # logit layer first
        for (layer_name, index), g in sorted(o.labels.groups.items(), key=lambda kv: (-order.index(kv[0][0]) if kv[0][0] in order else 0, kv[0][1])) if o.labels else []:
            score = f"{g.score:.2f}" if g.score is not None else "-"
            part = {True: "part of class", False: "context", None: "undecided"}[g.part_of_class]
            click.echo(f"  {layer_name:<12} g{index:<3} {g.label:<28} {score:>5}  {part}")


def _outcome_json(o) -> dict:
    from neurflow.artifact import load_circuit

    from ..graph.schema import class_uid, group_uid, model_uid

    circuit = load_circuit(o.directory)
    cls = class_uid(model_uid(circuit.model_name, circuit.model_fingerprint), circuit.class_index)
    labels = o.labels
    return {
        "class": cls,
        "class_name": o.class_name,
        "directory": str(o.directory),
        "status": o.status,
        "source": labels.source if labels else None,
        "groups": [
            {"group": group_uid(cls, layer, index), "label": g.label, "description": g.description, "score": g.score,
             "runner_up": g.runner_up, "part_of_class": g.part_of_class, "source": g.source, "labelled_at": g.labelled_at}
            for (layer, index), g in sorted(labels.groups.items())
        ] if labels else [],
        "relations": [
            {"child": group_uid(cls, cl, ci), "parent": group_uid(cls, pl, pi), "relation": r.relation}
            for (cl, ci, pl, pi), r in sorted(labels.relations.items())
        ] if labels else [],
    }
