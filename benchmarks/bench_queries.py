#!/usr/bin/env python
"""Benchmark the query library on a large synthetic graph in a throwaway embedded server.

Workload (defaults, ``--shape paper``): 200 classes of one synthetic model, each a circuit of
the paper's depth: 11 layers (resnet50's fc down to layer2.3), tau = 5 core neurons per target
drawn from 12-18 popular channels per layer, one semantic group per neuron, 6-10 neuron groups
per layer below the logit, one exemplar patch per semantic and neuron group: kept small apart
from its depth and group count, so that 200 classes load in minutes on the embedded database,
while each class has 10^7 FLOWS_TO paths from its deepest layer. ``--shape shallow`` is the
earlier 4-layer workload (tau 16, 16-50 neurons per layer, 2-5 semantic groups per neuron,
5-10 groups per layer, 4 exemplars). Neurons are drawn from
per-layer pools with a Zipf-like popularity, so classes share
neurons the way real classes share generic features. The circuits are real
``neurflow.Circuit`` objects (random weights, Eq. 4-normalised per semantic group; group
edges summed as in Section 3.5) turned into rows by the loader's own
``circuit_rows`` (path figures included) and written by its own ``write_class`` (the ``WRITES`` statements, in
managed transactions); the concept atlas rows (concepts, EXPRESSES, SIMILAR_TO with the
atlas's top-10 / Jaccard >= 0.1 rule) are synthesised and written with ``ATLAS_WRITES``;
``neurflow debug`` and ``neurflow evaluate`` properties are set on every group and class.
Reported besides latencies: nodes, relationships, load seconds, groups, FLOWS_TO and paths
from the deepest layer per class (mean, min, max).

The server is a fresh embedded ArcadeDB (``neurflow.ingest.embedded_db``) in a temporary
``NEURFLOW_HOME`` on free ports, stopped at the end. Each query then runs ``--runs``
times (after ``--warmup`` runs) with typical parameters drawn at random per run (a random
class, group, neuron, concept), through ``neurflow.queries.run_query``; reported: p50,
p95, min, max and mean latency and the mean row count. A table goes to stdout, JSON to
``benchmarks/results/queries.json`` (or ``--json``).

Usage::

    python benchmarks/bench_queries.py                     # 200 classes (load takes minutes on 2 cores)
    python benchmarks/bench_queries.py --classes 20 --runs 5 --json /tmp/q.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

#: Circuit shapes. "paper": the paper's depth (resnet50 from the logit down to layer2.3: 11
#: layers, 10 transitions) with up to 10 neuron groups per layer, kept small elsewhere (few
#: neurons per layer, 1-2 semantic groups per neuron, 1 exemplar) so that 200 classes load in
#: minutes on the embedded database; "shallow": the earlier 4-layer workload.
SHAPES = {
    "paper": {
        "layers": ("fc", "layer4.2", "layer4.1", "layer4.0", "layer3.5", "layer3.4", "layer3.3", "layer3.2", "layer3.1", "layer3.0", "layer2.3"),
        "pools": {"layer4": 2048, "layer3": 1024, "layer2": 512},
        "neurons": (12, 19), "semantic_groups": (1, 2), "groups": (6, 11), "tau": 5, "exemplars": 1,
    },
    "shallow": {
        "layers": ("fc", "layer4", "layer3", "layer2"),
        "pools": {"layer4": 512, "layer3": 256, "layer2": 128},
        "neurons": (16, 51), "semantic_groups": (2, 6), "groups": (5, 11), "tau": 16, "exemplars": 4,
    },
}
LAYERS = SHAPES["paper"]["layers"]
POOLS = SHAPES["paper"]["pools"]
SHAPE = SHAPES["paper"]


def _pool(layer: str) -> int:
    return POOLS[layer.split(".")[0]]
MODEL_NAME = "synth"
FINGERPRINT = "sha256:" + "5eed" * 16


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- synthetic circuits


def _popular(rng: np.random.Generator, pool: int, n: int) -> np.ndarray:
    """``n`` distinct channels of ``pool``, low channels more likely (Zipf-like popularity)."""
    p = 1.0 / np.arange(1, pool + 1) ** 0.8
    perm = np.random.default_rng(pool).permutation(pool)  # the same popular channels for every class
    return np.sort(perm[rng.choice(pool, size=n, replace=False, p=p / p.sum())])


def synth_circuit(rng: np.random.Generator, class_index: int, *, tau: int, n_exemplars: int, n_patches: int = 600):
    """One random ``neurflow.Circuit`` with the shape of a real one."""
    from neurflow.circuit import (
        Circuit,
        CircuitConfig,
        CoreNeurons,
        GroupEdge,
        GroupMember,
        HypertreeEdge,
        NeuronGroup,
        NeuronRef,
        SemanticGroup,
    )
    from neurflow.patches import PatchGrid

    n_images = 20
    grid = PatchGrid(
        image_index=rng.integers(0, n_images, size=n_patches).astype(np.int64),
        boxes=np.tile(np.array([0, 0, 112, 112], dtype=np.int64), (n_patches, 1)),
        scales=np.full(n_patches, 0.5),
        image_size=224,
    )
    # Layer by layer from the logit down: each target's core = tau neurons of a pool of
    # 16-50 popular channels of the layer below; that layer's neurons = the union of cores.
    neurons: dict[str, list[int]] = {"fc": [class_index]}
    cores: dict[NeuronRef, list[int]] = {}
    for upper, lower in zip(LAYERS[:-1], LAYERS[1:]):
        pool = _popular(rng, _pool(lower), int(rng.integers(*SHAPE["neurons"])))
        for a in neurons[upper]:
            cores[NeuronRef(upper, a)] = [int(c) for c in rng.choice(pool, size=min(tau, len(pool)), replace=False)]
        neurons[lower] = sorted({c for a in neurons[upper] for c in cores[NeuronRef(upper, a)]})
    sgs: list[SemanticGroup] = []
    n_sg: dict[NeuronRef, int] = {}
    for layer in LAYERS:
        space = LAYERS[min(LAYERS.index(layer) + 1, len(LAYERS) - 1)]
        for ch in neurons[layer]:
            ref = NeuronRef(layer, ch)
            n_sg[ref] = int(rng.integers(*SHAPE["semantic_groups"]))
            for j in range(n_sg[ref]):
                pids = tuple(int(p) for p in np.sort(rng.choice(n_patches, size=int(rng.integers(3, 15)), replace=False)))
                sgs.append(
                    SemanticGroup(ref, j, pids, tuple(float(a) for a in rng.random(len(pids))), pids[:n_exemplars], space, rng.random(8).astype(np.float32))
                )
    targets: list[CoreNeurons] = []
    edges: list[HypertreeEdge] = []
    for target, core in cores.items():
        lower = LAYERS[LAYERS.index(target.layer) + 1]
        scores = np.sort(rng.random(len(core)))[::-1]
        targets.append(CoreNeurons(target, lower, (), tuple(core), tuple(float(s) for s in scores), tuple(float(s) for s in scores), np.zeros(0, dtype=np.float32)))
        for j in range(n_sg[target]):
            w = rng.normal(size=len(core)) * scores
            w = w / np.abs(w).sum()  # Eq. 4: |weights| into one semantic group sum to 1
            for ch, value in zip(core, w):
                edges.append(HypertreeEdge(NeuronRef(lower, ch), target, j, float(value), float(value) * 0.1))
    groups: list[NeuronGroup] = []
    for depth, layer in enumerate(LAYERS):
        items = [s for s in sgs if s.neuron.layer == layer]
        n_groups = 1 if depth == 0 else int(min(len(items), rng.integers(*SHAPE["groups"])))
        labels = np.concatenate([np.arange(n_groups), rng.integers(0, n_groups, size=len(items) - n_groups)])
        rng.shuffle(labels)
        for g in range(n_groups):
            members = [items[i] for i in np.nonzero(labels == g)[0]]
            pids = tuple(sorted({p for s in members for p in s.patch_ids}))
            groups.append(NeuronGroup(layer, g, tuple(GroupMember(s.neuron, s.index) for s in members), pids, pids[:n_exemplars], np.zeros(8, dtype=np.float32)))
    weight = {(e.parent, e.group, e.child): e.weight for e in edges}
    group_edges: list[GroupEdge] = []
    for upper, lower in zip(LAYERS[:-1], LAYERS[1:]):
        for parent in (g for g in groups if g.layer == upper):
            for child in (g for g in groups if g.layer == lower):
                total, count = 0.0, 0
                for m in parent.members:
                    for s in child.neurons:
                        w = weight.get((m.neuron, m.semantic_group, s))
                        if w is not None:
                            total += w
                            count += 1
                if count:
                    group_edges.append(GroupEdge(child.layer, child.index, parent.layer, parent.index, total, count))
    return Circuit(
        model_name=MODEL_NAME,
        model_fingerprint=FINGERPRINT,
        class_index=class_index,
        class_name=f"class{class_index:04d}",
        layers=LAYERS,
        config=CircuitConfig(tau=tau, k=50, steps=50, n_exemplars=n_exemplars),
        image_ids=tuple(f"img{class_index}_{i}.png" for i in range(n_images)),
        data_fingerprint="sha256:" + f"{class_index:064x}",
        patches=grid,
        targets=tuple(targets),
        semantic_groups=tuple(sgs),
        edges=tuple(edges),
        groups=tuple(groups),
        group_edges=tuple(group_edges),
        neuron_activations={},
    )


def synth_atlas(model: str, circuits: list, rng: np.random.Generator, *, concepts_per_layer: int = 20, min_jaccard: float = 0.1, top_similar: int = 10) -> dict[str, list[dict]]:
    """Rows for ``ATLAS_WRITES``: concepts by neuron (with noise), SIMILAR_TO by Jaccard of channel sets."""
    from neurflow.ingest.graph.schema import class_uid, group_uid, sg_uid

    concept_rows, expresses, similar = [], [], []
    members: dict[tuple[str, int], set[int]] = defaultdict(set)
    sizes: dict[tuple[str, int], int] = defaultdict(int)
    for c in circuits:
        for s in c.semantic_groups:
            k = (s.neuron.channel * 7 + s.index) % concepts_per_layer if rng.random() > 0.2 else int(rng.integers(concepts_per_layer))
            members[(s.neuron.layer, k)].add(c.class_index)
            sizes[(s.neuron.layer, k)] += 1
            expresses.append({"sg": sg_uid(class_uid(model, c.class_index), s.neuron, s.index), "concept": f"{model}/{s.neuron.layer}/k{k}", "distance": float(rng.random())})
    for (layer, k), classes in sorted(members.items()):
        concept_rows.append({"uid": f"{model}/{layer}/k{k}", "model": model,
                             "props": {"model": model, "layer": layer, "index": k, "size": sizes[(layer, k)], "n_classes": len(classes), "classes": sorted(classes)}})
    for layer in LAYERS:
        groups = [(c.class_index, g.index, [n.channel for n in g.neurons]) for c in circuits for g in c.groups_of(layer)]
        width = max((max(ch) for _, _, ch in groups if ch), default=0) + 1
        m = np.zeros((len(groups), width), dtype=np.float32)
        for i, (_, _, ch) in enumerate(groups):
            m[i, ch] = 1
        inter = m @ m.T
        size = m.sum(1)
        jac = inter / np.maximum(size[:, None] + size[None, :] - inter, 1)
        cls = np.array([c for c, _, _ in groups])
        jac[cls[:, None] == cls[None, :]] = 0
        jac[jac < min_jaccard] = 0
        keep: set[tuple[int, int]] = set()
        for i in range(len(groups)):
            best = np.argsort(-jac[i], kind="stable")[:top_similar]
            keep.update((min(i, j), max(i, j)) for j in best if jac[i, j] > 0)
        for i, j in sorted(keep):
            (ca, ga, _), (cb, gb, _) = groups[i], groups[j]
            similar.append({"a": group_uid(class_uid(model, ca), layer, ga), "b": group_uid(class_uid(model, cb), layer, gb), "jaccard": float(jac[i, j]), "shared": int(inter[i, j])})
    return {"concept": concept_rows, "expresses": expresses, "similar_to": similar}


# --------------------------------------------------------------------------- benchmark


# The loader's statements that MERGE a relationship starting from a shared, high-degree
# Neuron (it gains CONTRIBUTES / HAS_SEMANTIC_GROUP relationships from every class). The
# embedded server checks a relationship MERGE from its first node, so these slow down as
# classes accumulate (about 440 rows/s after 25 classes, falling further); written from
# the class-owned SemanticGroup side they create the same relationships at a constant
# 5-8k rows/s. Neo4j picks the cheaper side itself, so both forms are equivalent there.
# ``--writer proposed`` (default) loads with these; ``--writer as-is`` with ingest's own.
PROPOSED_WRITES: dict[str, str] = {
    "semantic_group": (
        "UNWIND $rows AS r MATCH (n:Neuron {uid: r.neuron}) MERGE (s:SemanticGroup {uid: r.uid}) "
        "SET s += r.props MERGE (s)<-[:HAS_SEMANTIC_GROUP]-(n)"
    ),
    "contributes": (
        "UNWIND $rows AS r MATCH (n:Neuron {uid: r.child}) MATCH (s:SemanticGroup {uid: r.sg}) "
        "MERGE (s)<-[e:CONTRIBUTES]-(n) SET e.weight = r.weight, e.abs_weight = r.abs_weight, "
        "e.importance = r.importance, e.rank = r.rank, e.class = r.cls"
    ),
}


def load_graph(conn, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    """Synthesise and load ``args.classes`` circuits, the atlas and the debug/eval properties."""
    from neurflow.ingest.graph import writer as graph_writer

    graph_writer.ensure_schema(conn.driver, conn.database)
    saved = dict(graph_writer.WRITES)
    if args.writer == "proposed":
        graph_writer.WRITES.update(PROPOSED_WRITES)  # same keys, same order; restored below
    try:
        return _load(conn, args, rng)
    finally:
        graph_writer.WRITES.clear()
        graph_writer.WRITES.update(saved)


def _load(conn, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    from neurflow.ingest.graph.atlas import ATLAS_WRITES
    from neurflow.ingest.graph.rows import circuit_rows
    from neurflow.ingest.graph.schema import model_uid
    from neurflow.ingest.graph.writer import batched, run_write, write_class

    model = model_uid(MODEL_NAME, FINGERPRINT)
    circuits, write_s, rels, rows_total = [], 0.0, 0, 0
    t_synth = 0.0
    per_class: list[dict[str, float]] = []  # nodes, relationships, seconds and paths of each class
    for i in range(args.classes):
        t0 = time.perf_counter()
        c = synth_circuit(rng, i, tau=args.tau, n_exemplars=args.exemplars)
        t_synth += time.perf_counter() - t0
        circuits.append(c)
        rows = circuit_rows(c, run={"uid": f"run-synth-{i:05d}", "started": "2025-01-01T00:00:00Z", "finished": "2025-01-01T00:05:00Z", "seconds": 300.0, "device": "cpu"})
        stats = write_class(conn.driver, conn.database, rows, batch_size=args.batch)
        write_s += stats.seconds
        rels += stats.relationships
        deepest = [r["props"] for r in rows.rows["neuron_group"] if r["props"]["depth"] == len(LAYERS) - 1]
        per_class.append({
            "nodes": sum(rows.count(k) for k in ("class", "semantic_group", "neuron_group", "group_paths", "patch", "run")),
            "relationships": stats.relationships, "seconds": stats.seconds, "groups": rows.count("neuron_group"), "flows_to": rows.count("flows_to"),
            "paths_from_deepest": sum(p["n_paths"] for p in deepest),
        })
        rows_total += sum(stats.rows.values())
        if (i + 1) % max(1, args.classes // 10) == 0 or i + 1 == args.classes:
            print(f"  loaded {i + 1}/{args.classes} classes: {rels} relationship rows in {write_s:.0f} s ({rels / max(write_s, 1e-9):.0f}/s)", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    atlas = synth_atlas(model, circuits, rng)
    t_synth += time.perf_counter() - t0
    t0 = time.perf_counter()
    for name, query in ATLAS_WRITES.items():
        for batch in batched(atlas[name], args.batch):
            run_write(conn.driver, conn.database, query, rows=batch)
    debug_rows, eval_rows = [], []
    for c in circuits:
        scores = rng.beta(1, 6, size=len(c.groups))
        order = np.argsort(-scores)
        for rank, gi in enumerate(order, start=1):
            g = c.groups[gi]
            debug_rows.append({"uid": f"{model}/c{c.class_index}/{g.layer}/g{g.index}", "props": {
                "bias_score": float(scores[gi]), "bias_rank": rank, "biased": bool(scores[gi] >= 0.25), "fp_metric": float(rng.random()),
                "tp_metric": float(rng.random()), "mask_fp_flip": float(rng.random()), "mask_tp_drop": float(rng.random()),
                "effect_z": float(rng.normal()), "shared_classes": int(rng.integers(0, 20))}})
        core, rand = float(rng.random()), float(rng.random())
        eval_rows.append({"uid": f"{model}/c{c.class_index}", "props": {
            "eval_faithful": bool(core < rand and rng.random() > 0.1), "eval_optimality_diff": float(rng.normal(0.1, 0.1)),
            "eval_fidelity_mask_core": core, "eval_fidelity_mask_random": rand, "eval_correlation_spearman": float(rng.random()),
            "evaluated_at": "2025-01-02T00:00:00Z", "debugged_at": "2025-01-02T00:00:00Z"}})
    for batch in batched(debug_rows, args.batch):
        run_write(conn.driver, conn.database, "UNWIND $rows AS r MATCH (g:NeuronGroup {uid: r.uid}) SET g += r.props", rows=batch)
    for batch in batched(eval_rows, args.batch):
        run_write(conn.driver, conn.database, "UNWIND $rows AS r MATCH (c:Class {uid: r.uid}) SET c += r.props", rows=batch)
    atlas_s = time.perf_counter() - t0
    return {
        "model": model,
        "circuits": circuits,
        "atlas": atlas,
        "load_seconds": round(write_s, 1),
        "atlas_and_properties_seconds": round(atlas_s, 1),
        "synthesis_seconds": round(t_synth, 1),
        "relationship_rows": rels + sum(len(v) for k, v in atlas.items() if k != "concept"),
        "rows": rows_total + sum(len(v) for v in atlas.values()),
        "per_class": {k: {"mean": round(float(np.mean([x[k] for x in per_class])), 2), "min": min(x[k] for x in per_class),
                          "max": max(x[k] for x in per_class)} for k in per_class[0]},
    }


def query_params(state: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Typical parameters of every query, drawn at random."""
    model, circuits, atlas = state["model"], state["circuits"], state["atlas"]
    a, b = rng.choice(len(circuits), size=2, replace=False)
    ca = circuits[int(a)]
    deepest = [g for g in ca.groups if g.layer == LAYERS[-1]]
    g_any = ca.groups[int(rng.integers(len(ca.groups)))]
    g_deep = deepest[int(rng.integers(len(deepest)))]
    edge = ca.edges[int(rng.integers(len(ca.edges)))]
    concept = atlas["concept"][int(rng.integers(len(atlas["concept"])))]["uid"]
    return {
        "overview": {},
        "classes": {},
        "trace_class": {"class": ca.class_name, "limit": 10},
        "trace_group_up": {"group": f"{model}/c{ca.class_index}/{g_deep.layer}/g{g_deep.index}"},
        "group_detail": {"group": f"{model}/c{ca.class_index}/{g_any.layer}/g{g_any.index}"},
        "neuron_profile": {"neuron": edge.child.key},
        "compare_classes": {"class_a": ca.class_name, "class_b": str(circuits[int(b)].class_index)},
        "similar_classes": {"class": ca.class_name},
        "concepts": {"model": MODEL_NAME},
        "concept_classes": {"concept": concept},
        "biased_groups": {},
        "fp_causes": {},
        "unfaithful_classes": {},
        "class_circuit": {"class": ca.class_name},
        "group_exemplars": {"groups": [f"{model}/c{ca.class_index}/{g.layer}/g{g.index}" for g in ca.groups[:20]]},
        "media_files": {"uids": [f"{model}/c{ca.class_index}/p{p}" for p in g_any.exemplar_ids]},
        "find_concept": {"text": "flowers"},
    }


def time_queries(conn, state: dict[str, Any], args: argparse.Namespace, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    from neurflow.queries import load_queries, run_query

    # find_concept_fulltext needs Neo4j's full-text index (the embedded database has none)
    names = [n for n in load_queries() if (not args.only or n in args.only) and n in query_params(state, rng)]
    results: dict[str, dict[str, float]] = {}
    for name in names:
        times, rows = [], []
        for i in range(args.warmup + args.runs):
            params = query_params(state, rng)[name]
            t0 = time.perf_counter()
            records = run_query(conn.driver, name, params, database=conn.database)
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                times.append(dt * 1000)
                rows.append(len(records))
        times.sort()
        results[name] = {
            "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))], 1),
            "min_ms": round(times[0], 1),
            "max_ms": round(times[-1], 1),
            "mean_ms": round(statistics.fmean(times), 1),
            "mean_rows": round(statistics.fmean(rows), 1),
            "runs": len(times),
        }
        r = results[name]
        print(f"  {name:<20} p50 {r['p50_ms']:>9.1f} ms  p95 {r['p95_ms']:>9.1f} ms  rows {r['mean_rows']:>7.1f}", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=200, help="classes to synthesise and load (default 200)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="paper",
                        help="paper: 11 layers (logit to layer2.3), up to 10 groups per layer (default); shallow: the earlier 4-layer workload")
    parser.add_argument("--tau", type=int, default=None, help="core neurons per target (default: the shape's, 6 paper / 16 shallow)")
    parser.add_argument("--exemplars", type=int, default=None, help="exemplar patches per semantic/neuron group (default: the shape's, 1 / 4)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per query (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per query first (default 2)")
    parser.add_argument("--batch", type=int, default=2000, help="UNWIND batch size (default 2000)")
    parser.add_argument("--heap", default="2g", help="JVM heap of the embedded server (default 2g)")
    parser.add_argument("--writer", choices=("proposed", "as-is"), default="proposed",
                        help="load with ingest's WRITES as they are, or with the two proposed MERGE directions (same graph; default proposed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="time only these queries")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "queries.json")
    args = parser.parse_args(argv)
    if args.classes < 2:
        parser.error("--classes must be at least 2")
    global LAYERS, POOLS, SHAPE
    SHAPE = SHAPES[args.shape]
    LAYERS, POOLS = SHAPE["layers"], SHAPE["pools"]
    args.tau = SHAPE["tau"] if args.tau is None else args.tau
    args.exemplars = SHAPE["exemplars"] if args.exemplars is None else args.exemplars

    home = tempfile.mkdtemp(prefix="neurflow-bench-queries-")
    os.environ["NEURFLOW_HOME"] = home  # a throwaway embedded server, never the user's
    from neurflow.ingest import embedded_db
    from neurflow.ingest.connection import connect
    from neurflow.queries import run_query

    rng = np.random.default_rng(args.seed)
    load_start = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews the timings
    t0 = time.perf_counter()
    info = embedded_db.start(port=_free_port(), http_port=_free_port(), timeout=180, heap_size=args.heap, exit_with=os.getpid())
    start_s = time.perf_counter() - t0
    try:
        with connect(info.uri, info.user, embedded_db.password(), info.database) as conn:
            print(f"embedded server up in {start_s:.1f} s ({info.uri}); synthesising and loading {args.classes} classes ...", file=sys.stderr, flush=True)
            state = load_graph(conn, args, rng)
            counts = {f"{r['section']}:{r['name']}": r["count"] for r in run_query(conn.driver, "overview", database=conn.database) if r["section"] in ("node", "relationship")}
            nodes = sum(v for k, v in counts.items() if k.startswith("node:"))
            rels = sum(v for k, v in counts.items() if k.startswith("relationship:"))
            print(f"graph: {nodes} nodes, {rels} relationships; load {state['load_seconds']} s; timing queries ...", file=sys.stderr, flush=True)
            results = time_queries(conn, state, args, rng)
    finally:
        embedded_db.stop(timeout=30)

    doc = {
        "benchmark": "queries",
        "workload": {"classes": args.classes, "shape": args.shape, "layers": list(LAYERS), "pools": POOLS, "tau": args.tau, "exemplars": args.exemplars,
                     "neurons_per_layer": f"{SHAPE['neurons'][0]}-{SHAPE['neurons'][1] - 1}",
                     "semantic_groups_per_neuron": f"{SHAPE['semantic_groups'][0]}-{SHAPE['semantic_groups'][1] - 1}",
                     "groups_per_layer": f"{SHAPE['groups'][0]}-{SHAPE['groups'][1] - 1}",
                     "runs": args.runs, "warmup": args.warmup, "seed": args.seed, "batch": args.batch, "heap": args.heap, "writer": args.writer},
        "graph": {"nodes": nodes, "relationships": rels, "counts": counts, "per_class": state["per_class"]},
        "load": {"server_start_seconds": round(start_s, 1), "write_seconds": state["load_seconds"],
                 "relationships_per_second": round(state["relationship_rows"] / max(state["load_seconds"] + state["atlas_and_properties_seconds"], 1e-9)),
                 "atlas_and_properties_seconds": state["atlas_and_properties_seconds"], "synthesis_seconds": state["synthesis_seconds"]},
        "queries": results,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(), "database": "embedded ArcadeDB (Bolt)",
                    "load_average_start": load_start, "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")

    print(f"\n{args.classes} classes: {nodes} nodes, {rels} relationships; loaded in {state['load_seconds']} s "
          f"(+ atlas/properties {state['atlas_and_properties_seconds']} s); {args.runs} runs per query\n")
    pc = state["per_class"]
    print("per class: " + ", ".join(f"{k} {v['mean']} (min {v['min']}, max {v['max']})" for k, v in pc.items()) + "\n")
    print(f"{'query':<20} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9} {'rows':>7}")
    for name, r in results.items():
        print(f"{name:<20} {r['p50_ms']:>9.1f} {r['p95_ms']:>9.1f} {r['max_ms']:>9.1f} {r['mean_rows']:>7.1f}")
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
