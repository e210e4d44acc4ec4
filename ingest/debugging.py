"""``neurflow debug`` plumbing: images in, bias evidence onto the graph.

For each class: its artifact must exist and its Class node must be loaded and complete;
the model's fingerprint must equal the circuit's. True positives are the class's images
predicted as the class, false positives the other classes' images predicted as it. The
evidence of a class is written in ONE managed transaction (group properties, image and
patch example links), so a failure leaves the graph as it was.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import neo4j
import numpy as np
import torch

from neurflow.atlas import Atlas, build_atlas
from neurflow.circuit import Circuit
from neurflow.debugging import ClassDebug, debug_circuit

from .errors import ArtifactError, DatabaseError, InputError
from .graph_rows import class_uid, group_uid, model_uid, patch_props, patch_uid
from .pipeline import artifact_dir, find_artifacts, read_artifact

__all__ = ["DEBUG_WRITES", "debug_rows", "debug_classes", "write_debug", "shared_concepts"]

DEBUG_WRITES: tuple[tuple[str, str], ...] = (
    (
        "reset",
        "MATCH (g:NeuronGroup {class: $cls}) REMOVE g.bias_score, g.bias_rank, g.biased, g.tp_metric, g.fp_metric, "
        "g.user_metric, g.mask_tp_drop, g.mask_tp_logit_drop, g.mask_fp_flip, g.mask_tp_flip, g.random_fp_flip, g.random_tp_drop, "
        "g.effect_fp_flip, g.effect_z, g.effect_p, g.z_tp_drop, g.shared_classes, g.shared_fraction",
    ),
    ("unlink", "MATCH (g:NeuronGroup {class: $cls})-[d:DROPS]->() DELETE d"),
    ("groups", "UNWIND $rows AS r MATCH (g:NeuronGroup {uid: r.uid}) SET g += r.props"),
    (
        "images",
        "UNWIND $rows AS r MATCH (g:NeuronGroup {uid: r.group}) MERGE (i:Image {uid: r.uid}) SET i.path = r.path, i.model = r.model "
        "MERGE (g)-[d:DROPS {source: r.source}]->(i) SET d.rank = r.rank, d.logit_drop = r.logit_drop",
    ),
    (
        "patches",
        "UNWIND $rows AS r MATCH (g:NeuronGroup {uid: r.group}) MERGE (p:Patch {uid: r.uid}) SET p += r.props "
        "MERGE (g)-[d:DROPS {source: 'patch'}]->(p) SET d.rank = r.rank, d.logit_drop = r.logit_drop",
    ),
    ("class", "MATCH (c:Class {uid: $cls}) SET c.debugged_at = $at, c.debug_n_tp = $n_tp, c.debug_n_fp = $n_fp, c.bias_threshold = $threshold"),
)


def _none(x):
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else x


def debug_rows(circuit: Circuit, result: ClassDebug, image_paths: Sequence[str]) -> dict[str, list[dict]]:
    """Graph rows for one class's evidence (pure)."""
    m = model_uid(circuit.model_name, circuit.model_fingerprint)
    c = class_uid(m, circuit.class_index)
    rows: dict[str, list[dict]] = {"groups": [], "images": [], "patches": []}
    for rank, e in enumerate(result.groups, start=1):
        g = group_uid(c, e.layer, e.index)
        rows["groups"].append(
            {
                "uid": g,
                "props": {
                    "bias_score": e.bias_score,
                    "bias_rank": rank,
                    "biased": e.bias_score >= result.threshold,
                    "tp_metric": _none(e.tp_metric),
                    "fp_metric": _none(e.fp_metric),
                    "user_metric": _none(e.user_metric),
                    "mask_tp_drop": e.tp_prob_drop,
                    "mask_tp_logit_drop": e.tp_logit_drop,
                    "mask_fp_flip": _none(e.fp_flip),
                    "mask_tp_flip": _none(e.tp_flip),
                    "random_fp_flip": _none(e.random_fp_flip_mean),
                    "random_tp_drop": e.random_tp_prob_drop_mean,
                    "effect_fp_flip": _none(e.effect_fp_flip),
                    "effect_z": _none(e.z_fp_flip),
                    "effect_p": _none(e.p_fp_flip),
                    "z_tp_drop": _none(e.z_tp_drop),
                    "shared_classes": e.shared_classes,
                    "shared_fraction": _none(e.shared_fraction),
                },
            }
        )
        n_tp, n_fp = result.n_tp, result.n_fp
        for r, (i, drop) in enumerate(e.top_images):
            source = "tp" if i < n_tp else "fp" if i < n_tp + n_fp else "user"
            rows["images"].append({"group": g, "uid": f"{m}/img/{image_paths[i]}", "path": image_paths[i], "model": m, "source": source, "rank": r, "logit_drop": drop})
        for r, (p, drop) in enumerate(e.top_patches):
            props = patch_props(circuit, c, p)
            del props["thumbnail"]  # keep a thumbnail the loader wrote
            rows["patches"].append({"group": g, "uid": patch_uid(c, p), "rank": r, "logit_drop": drop, "props": props})
    return rows


def write_debug(driver: neo4j.Driver, database: str | None, cls: str, rows: dict[str, list[dict]], result: ClassDebug) -> None:
    """Write one class's evidence in a single managed transaction (all or nothing)."""

    def work(tx: neo4j.ManagedTransaction) -> None:
        for name, query in DEBUG_WRITES:
            if name in rows:
                if rows[name]:
                    tx.run(query, rows=rows[name]).consume()
            elif name == "class":
                tx.run(query, cls=cls, at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), n_tp=result.n_tp, n_fp=result.n_fp, threshold=result.threshold).consume()
            else:
                tx.run(query, cls=cls).consume()

    try:
        with driver.session(database=database) as session:
            session.execute_write(work)
    except neo4j.exceptions.Neo4jError as exc:
        raise DatabaseError(f"writing the debug evidence failed ({exc.code}): {exc.message}") from exc


def _class_loaded(driver: neo4j.Driver, database: str | None, cls: str) -> bool:
    records, _, _ = driver.execute_query(
        "MATCH (c:Class {uid: $cls}) RETURN c.complete AS complete", parameters_={"cls": cls}, database_=database, routing_=neo4j.RoutingControl.READ
    )
    return bool(records) and bool(records[0]["complete"])


def shared_concepts(atlas: Atlas | None, n_circuits: int, target: Circuit) -> tuple[dict, dict]:
    """Per group of ``target``: how much other classes' circuits use its concepts.

    Args:
        atlas: the concept atlas of all ``n_circuits`` circuits (built once per run), or
            None when there is no other class.
        n_circuits: how many circuits the atlas was built from, ``target``'s included.

    Returns:
        ``(counts, fractions)`` keyed by ``(layer, group index)``: ``counts`` is the number
        of other classes whose circuits use *any* of the group's member concepts;
        ``fractions`` is the mean over the group's members of the fraction of other classes
        using that member's concept. The union saturates for large groups (one generic member
        is enough), so the bias score uses the member mean.
    """
    if atlas is None or n_circuits < 2:
        return {}, {}
    users: dict[tuple[str, int], set[int]] = {}
    for a in atlas.assignments:
        users.setdefault((a.neuron.layer, a.concept), set()).add(a.class_index)
    mine = {(a.neuron.layer, a.neuron.channel, a.semantic_group): a.concept for a in atlas.assignments if a.class_index == target.class_index}
    counts, fractions = {}, {}
    others = n_circuits - 1
    for g in target.groups:
        classes: set[int] = set()
        member_fractions = []
        for mem in g.members:
            concept = mine.get((g.layer, mem.neuron.channel, mem.semantic_group))
            used_by = users[(g.layer, concept)] - {target.class_index} if concept is not None else set()
            classes |= used_by
            member_fractions.append(len(used_by) / others)
        counts[(g.layer, g.index)] = len(classes)
        fractions[(g.layer, g.index)] = float(np.mean(member_fractions)) if member_fractions else 0.0
    return counts, fractions


def _predict(model, images: torch.Tensor, batch: int = 128) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(images[i : i + batch]).argmax(1).cpu() for i in range(0, len(images), batch)]).numpy() if len(images) else np.zeros(0, dtype=np.int64)


def debug_classes(
    conn,
    req,
    *,
    classes: str = "all",
    images_dir: Path | None = None,
    draws: int = 20,
    seed: int = 0,
    top_n: int = 5,
    quiet: bool = False,
    write: bool = True,
    log=print,
) -> list[tuple[Circuit, ClassDebug]]:
    """Run the debugger for the requested classes and write the evidence.

    Args:
        conn: a connection (``.driver``, ``.database``), or None with ``write=False``.
        req: a :class:`~neurflow.ingest.pipeline.ComputeRequest` naming model, weights,
            data and artifact directory (as used to compute the circuits).
        images_dir: optional folder of extra images to score (any layout).

    Raises:
        InputError / ArtifactError / DatabaseError with a clear message. Every class is
        checked (artifact, fingerprint, loaded in the graph, false positives) and computed
        before anything is written, so a bad class in a list writes nothing; each class's
        evidence is then written in its own transaction.
    """
    from .images import _load_one, load_class_images, resolve_classes, scan_data
    from .models import load_model
    from .pipeline import resolve_device

    device = resolve_device(req.device)
    spec = load_model(req.model, req.weights, input_size=req.input_size, mean=req.mean, std=req.std, normalize=req.normalize, demo_root=req.demo_root)
    model = spec.module.to(device).eval()
    from neurflow.fingerprint import model_fingerprint

    fingerprint = model_fingerprint(model)
    data = scan_data(req.data, spec.categories)
    wanted = resolve_classes(classes, data, spec.categories)
    circuits: dict[int, Circuit] = {}
    for d in find_artifacts([req.out]):
        circuit, _, _ = read_artifact(d)
        if circuit.model_name == spec.name:
            circuits[circuit.class_index] = circuit
    for idx in wanted:
        if idx not in circuits:
            raise ArtifactError(
                f"class {idx} ({data.names[idx]}) has no circuit artifact under {artifact_dir(req.out, spec.name, idx, data.names[idx]).parent}; run 'neurflow ingest' for it first"
            )
        if circuits[idx].model_fingerprint != fingerprint:
            raise InputError(
                f"the model's weights (fingerprint {fingerprint[:19]}) differ from those of class {idx}'s circuit ({circuits[idx].model_fingerprint[:19]}); "
                "debug with the model the circuit was built from, or recompute the circuit"
            )
    # every class's images and predictions, once
    loaded = {i: load_class_images(data, i, spec.preprocess) for i in sorted(data.index_of.values())}
    preds = {i: _predict(model, ci.tensor.to(device)) for i, ci in loaded.items()}
    user = None
    user_paths: list[str] = []
    if images_dir is not None:
        files = sorted(p for p in Path(images_dir).rglob("*") if p.is_file())
        if not files:
            raise InputError(f"image folder '{images_dir}' has no files")
        tensors = []
        for f in files:
            try:
                tensors.append(_load_one(f, spec.preprocess))
                user_paths.append(str(f))
            except Exception:
                continue
        if not tensors:
            raise InputError(f"none of the {len(files)} files in '{images_dir}' could be read as an image")
        user = torch.stack(tensors)
    # every check before any model work or write: a bad class in a list writes nothing
    jobs = []
    for idx in wanted:
        circuit = circuits[idx]
        cls = class_uid(model_uid(circuit.model_name, circuit.model_fingerprint), idx)
        if write and not _class_loaded(conn.driver, conn.database, cls):
            raise InputError(f"class {idx} ({data.names[idx]}) has no ingested circuit in the graph; run 'neurflow load' on its artifact first")
        own = loaded[idx]
        tp_mask = preds[idx] == idx
        tp = own.tensor[torch.as_tensor(tp_mask)]
        tp_paths = [p for p, keep in zip(own.ids, tp_mask) if keep]
        fp_list, fp_paths = [], []
        for j, other in loaded.items():
            if j == idx:
                continue
            sel = preds[j] == idx
            if sel.any():
                fp_list.append(other.tensor[torch.as_tensor(sel)])
                fp_paths += [p for p, keep in zip(other.ids, sel) if keep]
        if not fp_list:
            message = (
                f"class {idx} ({data.names[idx]}): no false positives available (no image of another class is predicted as it); "
                "nothing to debug for this class"
            )
            if classes.strip() in ("all", "*"):
                log(f"  {message}; skipped")
                continue
            raise InputError(message)
        jobs.append((idx, cls, tp, torch.cat(fp_list), tp_paths + fp_paths + user_paths))
    atlas = build_atlas(list(circuits.values())) if len(circuits) >= 2 else None  # once for every class
    results = []
    for idx, cls, tp, fp, image_ids in jobs:
        circuit, own = circuits[idx], loaded[idx]
        counts, fractions = shared_concepts(atlas, len(circuits), circuit)
        row_of = {image_id: row for row, image_id in enumerate(own.ids)}
        d_c = own.tensor[torch.as_tensor([row_of[i] for i in circuit.image_ids])] if set(circuit.image_ids) <= row_of.keys() else None
        result = debug_circuit(
            model,
            circuit,
            tp.to(device),
            fp.to(device),
            user.to(device) if user is not None else None,
            class_images=d_c.to(device) if d_c is not None else None,
            draws=draws,
            seed=seed,
            top_n=top_n,
            shared_fraction=fractions or None,
            shared_classes=counts or None,
            image_ids=image_ids,
        )
        results.append((circuit, cls, result))
    if write:  # one transaction per class, after every class was computed
        for circuit, cls, result in results:
            write_debug(conn.driver, conn.database, cls, debug_rows(circuit, result, list(result.image_ids)), result)
    return [(circuit, result) for circuit, _, result in results]


def result_json(circuit: Circuit, result: ClassDebug) -> dict:
    """The ``--format json`` document of one class."""
    return {
        "class": {"index": circuit.class_index, "name": circuit.class_name},
        "n_tp": result.n_tp,
        "n_fp": result.n_fp,
        "threshold": result.threshold,
        "false_positives": list(result.image_ids[result.n_tp : result.n_tp + result.n_fp]),
        "groups": [
            {**{k: v for k, v in asdict(e).items() if k not in ("channels", "top_images", "top_patches")}, "neurons": list(e.channels),
             "top_images": [list(t) for t in e.top_images], "top_patches": [list(t) for t in e.top_patches]}
            for e in result.groups
        ],
    }

