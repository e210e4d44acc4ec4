"""``neurflow debug`` plumbing: images in, bias evidence and verdicts onto the graph.

For each class: its artifact must exist and its Class node must be loaded and complete;
the model's fingerprint must equal the circuit's. True positives are the class's images
predicted as the class, false positives the other classes' images predicted as it (one
streaming classification pass over the data folder finds both). The evidence of a class is
written in ONE managed transaction (group properties, class verdict, image and patch
example links), so a failure leaves the graph as it was.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import neo4j
import numpy as np
import torch

from neurflow.atlas import Atlas, build_atlas
from neurflow.circuit import Circuit
from neurflow.debugging import ClassDebug, DebugConfig, Verdict, assign_verdicts, debug_circuit

from .errors import ArtifactError, InputError
from .graph.errors import translating_errors
from .graph.rows import patch_props
from .graph.schema import class_uid, group_uid, image_uid, model_uid, patch_uid
from .session import ArtifactSet

__all__ = ["DEBUG_WRITES", "GROUP_PROPS", "Predictions", "classify_folder", "debug_rows", "debug_classes", "write_debug", "shared_concepts", "result_json"]

#: Every NeuronGroup property the debugger owns: cleared before a class's evidence is
#: written, and by a reload of the class (its groups are re-created).
GROUP_PROPS: tuple[str, ...] = (
    "bias_score", "bias_rank", "biased", "verdict", "causes_fp", "spurious", "tp_metric", "fp_metric", "user_metric",
    "mask_tp_drop", "mask_tp_logit_drop", "mask_fp_flip", "mask_tp_flip", "random_fp_flip", "random_tp_flip", "random_tp_drop",
    "collateral_tp", "object_share", "effect_fp_flip", "effect_z", "effect_p", "q_value", "draws", "z_tp_drop", "shared_classes", "shared_fraction", "confusers",
)

DEBUG_WRITES: tuple[tuple[str, str], ...] = (
    ("reset", "MATCH (g:NeuronGroup {class: $cls}) REMOVE " + ", ".join(f"g.{p}" for p in GROUP_PROPS)),
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
    (
        "class",
        "MATCH (c:Class {uid: $cls}) SET c.debugged_at = $at, c.debug_n_tp = $n_tp, c.debug_n_fp = $n_fp, c.debug_verdict = $verdict, "
        "c.debug_min_fp = $min_fp, c.debug_alpha = $alpha, c.debug_fdr_scope = $scope, c.debug_n_tests = $n_tests",  # CLASS_DEBUG_PROPS
    ),
)


def _none(x):
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else x


def debug_rows(circuit: Circuit, result: ClassDebug, image_paths: Sequence[str], names: dict[int, str] | None = None) -> dict[str, list[dict]]:
    """Graph rows for one class's evidence (pure).

    Args:
        names: class index -> name, for the ``confusers`` strings ("hoverfly 9/11").
    """
    m = model_uid(circuit.model_name, circuit.model_fingerprint)
    c = class_uid(m, circuit.class_index)
    names = names or {}
    rows: dict[str, list[dict]] = {"groups": [], "images": [], "patches": []}
    for rank, e in enumerate(result.groups, start=1):
        g = group_uid(c, e.layer, e.index)
        rows["groups"].append(
            {
                "uid": g,
                "props": {
                    "bias_score": e.bias_score,
                    "bias_rank": rank,
                    "biased": e.verdict == Verdict.SPURIOUS,
                    "verdict": e.verdict,
                    "causes_fp": e.causes_fp,
                    "spurious": None if not e.causes_fp else (e.part_of_class is False if e.part_of_class is not None else None),
                    "tp_metric": _none(e.tp_metric),
                    "fp_metric": _none(e.fp_metric),
                    "user_metric": _none(e.user_metric),
                    "mask_tp_drop": e.tp_prob_drop,
                    "mask_tp_logit_drop": e.tp_logit_drop,
                    "mask_fp_flip": e.fp_flip,
                    "mask_tp_flip": _none(e.tp_flip),
                    "random_fp_flip": e.random_fp_flip_mean,
                    "random_tp_flip": _none(e.random_tp_flip_mean),
                    "random_tp_drop": e.random_tp_prob_drop_mean,
                    "collateral_tp": e.collateral_tp,
                    "object_share": _none(e.object_share),
                    "effect_fp_flip": e.effect_fp_flip,
                    "effect_z": _none(e.z_fp_flip),
                    "effect_p": e.p_fp_flip,
                    "q_value": _none(e.q_value),
                    "draws": e.draws,
                    "z_tp_drop": _none(e.z_tp_drop),
                    "shared_classes": e.shared_classes,
                    "shared_fraction": _none(e.shared_fraction),
                    "confusers": [f"{names.get(k, k)} {n}/{total}" for k, n, total in e.confusers],
                },
            }
        )
        n_tp, n_fp = result.n_tp, result.n_fp
        for r, (i, drop) in enumerate(e.top_images):
            source = "tp" if i < n_tp else "fp" if i < n_tp + n_fp else "user"
            rows["images"].append({"group": g, "uid": image_uid(m, image_paths[i]), "path": image_paths[i], "model": m, "source": source, "rank": r, "logit_drop": drop})
        for r, (p, drop) in enumerate(e.top_patches):
            props = patch_props(circuit, c, p)
            del props["thumbnail"]  # keep a thumbnail the loader wrote
            rows["patches"].append({"group": g, "uid": patch_uid(c, p), "rank": r, "logit_drop": drop, "props": props})
    return rows


def write_debug(driver: neo4j.Driver, database: str | None, cls: str, rows: dict[str, list[dict]], result: ClassDebug) -> None:
    """Write one class's evidence in a single managed transaction (all or nothing).

    Raises:
        DatabaseUnavailable when the database goes away, DatabaseError for any other
        driver error (never a traceback, never the parameters).
    """
    params = {"cls": cls, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "n_tp": result.n_tp, "n_fp": result.n_fp,
              "verdict": result.verdict, "min_fp": result.config.min_fp, "alpha": result.config.alpha, "scope": result.config.fdr_scope,
              "n_tests": result.n_tests}

    def work(tx: neo4j.ManagedTransaction) -> None:
        for name, query in DEBUG_WRITES:
            if name in rows:
                if rows[name]:
                    tx.run(query, rows=rows[name]).consume()
            elif name == "class":
                tx.run(query, dict(params)).consume()
            else:
                tx.run(query, cls=cls).consume()

    with translating_errors("writing the debug evidence", unavailable_note="; nothing of this class was written"):
        with driver.session(database=database) as session:
            session.execute_write(work)


def _class_loaded(driver: neo4j.Driver, database: str | None, cls: str) -> bool:
    with translating_errors(f"reading class {cls}"):
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


@dataclass(frozen=True)
class Predictions:
    """The model's prediction for every image of a data folder (one streaming pass).

    Attributes:
        ids: image ids (paths relative to the data root), in data-index order.
        labels: ``[N]`` the class index of each image's folder.
        preds: ``[N]`` the predicted class index.
        skipped: ``(path, reason)`` of files that could not be read.
    """

    ids: tuple[str, ...]
    labels: np.ndarray
    preds: np.ndarray
    skipped: tuple[tuple[str, str], ...] = ()


class _Files(torch.utils.data.Dataset):
    """Image files -> preprocessed tensors; an unreadable file yields None (collated away)."""

    def __init__(self, root: Path, rel_paths: Sequence[str], preprocess) -> None:
        self.root, self.rel, self.pre = root, list(rel_paths), preprocess

    def __len__(self) -> int:
        return len(self.rel)

    def __getitem__(self, i: int):
        from PIL import UnidentifiedImageError

        from .images import _load_one

        try:
            return i, _load_one(self.root / self.rel[i], self.pre), ""
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            return i, None, type(exc).__name__


def _collate(items):
    good = [(i, t) for i, t, _ in items if t is not None]
    bad = [(i, why) for i, t, why in items if t is None]
    index = torch.as_tensor([i for i, _ in good], dtype=torch.long)
    tensor = torch.stack([t for _, t in good]) if good else torch.zeros(0)
    return index, tensor, bad


def _batches(root: Path, rel_paths: Sequence[str], preprocess, batch_size: int, workers: int):
    """``(indices into rel_paths, [b, 3, S, S] tensor, [(index, reason)])`` per batch, streamed."""
    loader = torch.utils.data.DataLoader(
        _Files(root, rel_paths, preprocess), batch_size=batch_size, num_workers=workers, collate_fn=_collate,
        pin_memory=torch.cuda.is_available(),
    )
    yield from loader


@torch.no_grad()
def classify_folder(model, data, preprocess, device, *, batch_size: int = 64, workers: int = 0) -> Predictions:
    """Predict every image under the data root in one streaming pass (memory: one batch).

    Unreadable files are skipped and listed.
    """
    ids = [rel for folder in data.folders for rel in data.files[folder]]
    labels = np.array([data.index_of[folder] for folder in data.folders for _ in data.files[folder]], dtype=np.int64)
    preds = np.full(len(ids), -1, dtype=np.int64)
    skipped = []
    for index, tensor, bad in _batches(data.root, ids, preprocess, batch_size, workers):
        if len(index):
            preds[index.numpy()] = model(tensor.to(device)).argmax(1).cpu().numpy()
        skipped += [(ids[i], why) for i, why in bad]
    keep = preds >= 0
    return Predictions(tuple(i for i, k in zip(ids, keep) if k), labels[keep], preds[keep], tuple(skipped))


def _load_images(root: Path, rel_paths: Sequence[str], preprocess, batch_size: int, workers: int) -> tuple[torch.Tensor, list[str]]:
    """The images of ``rel_paths`` that can be read, stacked, and their ids."""
    parts, ids = [], []
    for index, tensor, _ in _batches(root, rel_paths, preprocess, batch_size, workers):
        if len(index):
            parts.append(tensor)
            ids += [rel_paths[i] for i in index.tolist()]
    return (torch.cat(parts) if parts else torch.zeros(0)), ids


def _cap(indices: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` of ``indices``, a seeded sample kept in data order."""
    if limit is None or len(indices) <= limit:
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, size=limit, replace=False))


#: The class's own concepts cover at least this share of a group's exemplar pixels: part of
#: the class. At most :data:`NOT_OWN_SHARE`: not part of it (three quarters or more of its
#: pixels show something else, whichever concepts those are). In between: unknown.
OWN_SHARE, NOT_OWN_SHARE = 0.5, 0.25


def part_of_class(label) -> bool | None:
    """Is a group's concept the class's own? From its label (:class:`GroupLabel`).

    Pixel annotations give the share of the class's own concepts in the exemplar pixels
    (``class_share``); it decides with :data:`OWN_SHARE` / :data:`NOT_OWN_SHARE`. A
    background split over several concepts (sky 0.3, water 0.2, grass 0.2, ...) has no
    dominant concept, yet is clearly not the class. Labellers without pixel shares (a
    multimodal LLM) answer the question themselves (``part_of_class``). With annotations
    at hand, :func:`object_shares_on_false_positives` is better evidence: it counts only the
    pixels where the group fires, on the false positives it explains.
    """
    share = getattr(label, "class_share", None)
    return label.part_of_class if share is None else _decide(share)


def _decide(share: float | None) -> bool | None:
    return None if share is None else True if share >= OWN_SHARE else False if share <= NOT_OWN_SHARE else None


def _part_of_class(directory: Path) -> dict[tuple[str, int], bool | None]:
    """Per group: is its concept the class's own? From the labels stored beside the artifact."""
    from .labelling import read_labels

    return {key: part_of_class(label) for key, label in read_labels(directory).items()}


def object_shares_on_false_positives(model, circuit: Circuit, result: ClassDebug, fp_images: torch.Tensor, annotations, preprocess: dict,
                                     object_concepts: set[str]) -> dict[tuple[str, int], float | None]:
    """Per tested group: where it fires on the false positives it removes.

    For each group, the false positives that masking it flips (all of them when it flips
    none) are the evidence; on each, :func:`neurflow.debugging.firing_masks` marks where the
    group's neurons fire, and the annotated pixels there are counted. The share on *object*
    concepts (any class's own concepts: the class's object, or a look-alike's body) against
    everything else (backgrounds, context) says whether the group reacts to an object or to
    a context: a flowers group fires on the flowers around a kite called "bee"; a body group
    fires on the hoverfly called "bee".

    Args:
        fp_images: the false positives as tested, in ``result``'s FP order.
        object_concepts: names of the concepts that are some class's own.

    Returns:
        ``(layer, group index) -> share`` (None when no annotated pixel is under any mask).
    """
    from neurflow.debugging import _drop_mask, _masked_logits, _suffix, firing_masks
    from neurflow.segments import split_model

    split = split_model(model, circuit.layers)
    size = fp_images.shape[-1]
    ids = result.image_ids[result.n_tp : result.n_tp + result.n_fp]
    obj = {i for i, name in annotations.concepts.items() if name in object_concepts}
    ignore = np.array(sorted(annotations.ignore), dtype=np.int64)
    maps = [annotations.label_map(i, preprocess, size) for i in ids]
    out: dict[tuple[str, int], float | None] = {}
    feats_of: dict[str, torch.Tensor] = {}
    for e in result.groups:
        if e.layer not in feats_of:
            feats_of[e.layer] = split.extractor([e.layer])(fp_images)[e.layer]
        feats = feats_of[e.layer]
        logits = _masked_logits(_suffix(split, e.layer), feats, _drop_mask(feats.shape[1], e.channels, feats.device), 256 << 20)[0]
        flipped = (logits.argmax(1) != circuit.class_index).cpu().numpy()
        rows = np.flatnonzero(flipped) if flipped.any() else np.arange(len(ids))
        masks = firing_masks(split, e.layer, e.channels, fp_images[torch.as_tensor(rows, device=fp_images.device)])  # [r, S, S]
        under = np.concatenate([maps[r][m] for r, m in zip(rows, masks)]) if len(rows) else np.zeros(0, np.int64)
        under = under[~np.isin(under, ignore)]
        out[(e.layer, e.index)] = float(np.isin(under, list(obj)).mean()) if under.size else None
    return out


def debug_classes(
    conn,
    artifacts: ArtifactSet,
    *,
    classes: str = "all",
    images_dir: Path | None = None,
    annotations: Path | None = None,
    config: DebugConfig | None = None,
    max_tp: int | None = 200,
    max_fp: int | None = 500,
    batch_size: int = 64,
    workers: int = 0,
    quiet: bool = False,
    write: bool = True,
    log=print,
) -> list[tuple[Circuit, ClassDebug]]:
    """Run the debugger for the requested classes and write the evidence.

    Memory does not grow with the data folder: one streaming pass predicts every image,
    then each class loads only its true and false positives (at most ``max_tp`` and
    ``max_fp``, a seeded sample in data order when there are more) and its circuit's images.

    Args:
        conn: a connection (``.driver``, ``.database``), or None with ``write=False``.
        artifacts: the classes' artifacts with their loaded model and data root
            (:func:`neurflow.ingest.session.open_artifacts`).
        images_dir: optional folder of extra images to score (any layout).
        annotations: optional per-pixel concept annotations of the data folder (the format of
            ``neurflow label --labeller annotations``): whether a group reacts to an object or
            to a context is then decided by :func:`object_shares_on_false_positives`;
            otherwise by the stored labels.
        config: the debugger's settings (:class:`neurflow.debugging.DebugConfig`).

    Raises:
        InputError / ArtifactError / DatabaseError with a clear message. Every class is
        checked (artifact, fingerprint, loaded in the graph) and computed before anything
        is written, so a bad class in a list writes nothing; each class's evidence is then
        written in its own transaction. A class with fewer false positives than the
        evidence floor gets the verdict "insufficient evidence" (written too).
    """
    from .images import resolve_classes

    config = config or DebugConfig()
    session = artifacts.session
    spec, model, device, fingerprint = session.spec, session.module, session.device, session.fingerprint
    data = session.data(artifacts.data)
    wanted = resolve_classes(classes, data, spec.categories)
    circuits = artifacts.circuits
    for idx in wanted:
        if idx not in circuits:
            raise ArtifactError(f"class {idx} ({data.names[idx]}) has no circuit artifact of model '{spec.name}'; run 'neurflow ingest' for it first")
        if circuits[idx][0].model_fingerprint != fingerprint:
            raise InputError(
                f"the model's weights (fingerprint {fingerprint[:19]}) differ from those of class {idx}'s circuit ({circuits[idx][0].model_fingerprint[:19]}); "
                "debug with the model the circuit was built from, or recompute the circuit"
            )
        if write:
            cls = class_uid(model_uid(spec.name, fingerprint), idx)
            if not _class_loaded(conn.driver, conn.database, cls):
                raise InputError(f"class {idx} ({data.names[idx]}) has no ingested circuit in the graph; run 'neurflow load' on its artifact first")
    user = None
    user_paths: list[str] = []
    if images_dir is not None:
        files = sorted(str(p.relative_to(images_dir)) for p in Path(images_dir).rglob("*") if p.is_file())
        if not files:
            raise InputError(f"image folder '{images_dir}' has no files")
        user, rel = _load_images(Path(images_dir), files, spec.preprocess, batch_size, workers)
        if not rel:
            raise InputError(f"none of the {len(files)} files in '{images_dir}' could be read as an image")
        user_paths = [str(Path(images_dir) / r) for r in rel]
    annotation_set, object_concepts = None, set()
    if annotations is not None:
        from .labelling import read_annotations

        annotation_set = read_annotations(Path(annotations))
        object_concepts = {c for name in data.names.values() for c in annotation_set.own_concepts(name)}
    predictions = classify_folder(model, data, spec.preprocess, device, batch_size=batch_size, workers=workers)
    if predictions.skipped and not quiet:
        log(f"  {len(predictions.skipped)} unreadable image files skipped")
    sufficient = [idx for idx in wanted if int(((predictions.preds == idx) & (predictions.labels != idx)).sum()) >= config.min_fp]
    n_tests = sum(len([g for g in circuits[idx][0].groups if g.layer != circuits[idx][0].layers[0]]) for idx in sufficient)
    current = [c for c, _ in circuits.values() if c.model_fingerprint == fingerprint]  # stale artifacts of other weights stay out
    atlas = build_atlas(current) if len(current) >= 2 and sufficient else None  # once for every class
    results = []
    for idx in wanted:
        circuit, directory = circuits[idx]
        own = predictions.labels == idx
        hit = predictions.preds == idx
        tp_rows = _cap(np.flatnonzero(own & hit), max_tp, config.seed)
        fp_rows = _cap(np.flatnonzero(~own & hit), max_fp, config.seed)
        if len(fp_rows) < config.min_fp:
            if not quiet:
                log(f"  class {idx} ({data.names[idx]}): {len(fp_rows)} false positives, fewer than the evidence floor of {config.min_fp}: insufficient evidence")
            ids = tuple(predictions.ids[i] for i in (*tp_rows, *fp_rows))
            results.append((circuit, ClassDebug(idx, len(tp_rows), len(fp_rows), 0, (), config, Verdict.INSUFFICIENT, 0, ids,
                                                tuple(int(predictions.labels[i]) for i in fp_rows))))
            continue
        tp, tp_ids = _load_images(data.root, [predictions.ids[i] for i in tp_rows], spec.preprocess, batch_size, workers)
        fp, fp_ids = _load_images(data.root, [predictions.ids[i] for i in fp_rows], spec.preprocess, batch_size, workers)
        label_of = dict(zip(predictions.ids, predictions.labels.tolist()))
        d_c, d_ids = _load_images(data.root, list(circuit.image_ids), spec.preprocess, batch_size, workers) if data.folder_of(idx) else (None, [])
        counts, fractions = shared_concepts(atlas, len(current), circuit)
        result = debug_circuit(
            model,
            circuit,
            tp.to(device),
            fp.to(device),
            user.to(device) if user is not None else None,
            fp_classes=[label_of[i] for i in fp_ids],
            class_images=d_c.to(device) if d_c is not None and d_ids == list(circuit.image_ids) else None,
            config=config,
            n_tests=n_tests if config.fdr_scope == "run" else None,
            part_of_class=_part_of_class(directory) if annotation_set is None else None,  # annotations decide below
            shared_fraction=fractions or None,
            shared_classes=counts or None,
            image_ids=[*tp_ids, *fp_ids, *user_paths],
        )
        if annotation_set is not None:  # the better evidence: where the group fires on the false positives it explains
            shares = object_shares_on_false_positives(model, circuit, result, fp.to(device), annotation_set, spec.preprocess.describe(), object_concepts)
            result = replace(result, groups=tuple(replace(g, part_of_class=_decide(shares[(g.layer, g.index)]), object_share=shares[(g.layer, g.index)]) for g in result.groups))
        results.append((circuit, result))
    verdicts = assign_verdicts([r for _, r in results])
    results = [(c, r) for (c, _), r in zip(results, verdicts)]
    if write:  # one transaction per class, after every class was computed
        names = {i: data.names[i] for i in data.names}
        for circuit, result in results:
            cls = class_uid(model_uid(circuit.model_name, circuit.model_fingerprint), circuit.class_index)
            write_debug(conn.driver, conn.database, cls, debug_rows(circuit, result, list(result.image_ids), names), result)
    return results


def result_json(circuit: Circuit, result: ClassDebug, names: dict[int, str] | None = None) -> dict:
    """The ``--format json`` document of one class."""
    names = names or {}
    cfg = result.config
    return {
        "class": {"index": circuit.class_index, "name": circuit.class_name},
        "verdict": result.verdict,
        "n_tp": result.n_tp,
        "n_fp": result.n_fp,
        "test": {"statistic": "mean drop of the class's logit margin over the false positives when masked", "null": "random neuron sets of the group's size from its layer",
                 "p_value": "sequential Monte-Carlo (Besag-Clifford)", "fdr": "Benjamini-Hochberg", "alpha": cfg.alpha,
                 "fdr_scope": cfg.fdr_scope, "n_tests": result.n_tests, "min_fp": cfg.min_fp},
        "false_positives": list(result.image_ids[result.n_tp : result.n_tp + result.n_fp]),
        "groups": [
            {**{k: v for k, v in asdict(e).items() if k not in ("channels", "top_images", "top_patches", "confusers")}, "neurons": list(e.channels),
             "confusers": [{"class": names.get(k, k), "flipped": n, "false_positives": total} for k, n, total in e.confusers],
             "top_images": [list(t) for t in e.top_images], "top_patches": [list(t) for t in e.top_patches]}
            for e in result.groups
        ],
    }
