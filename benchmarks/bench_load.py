#!/usr/bin/env python
"""Benchmark ``neurflow load``'s writes (relationships/s) on the embedded database, and the CSV export.

Workload (defaults): 200 synthetic classes of the paper's depth (11 layers, resnet50's fc down
to layer2.3), made by ``benchmarks/bench_queries.py``'s generator (imported, same seed, same
shape) and turned into rows by the loader's own ``circuit_rows``. The rows are built once;
every write mode then loads all of them into a FRESH embedded ArcadeDB server (its own
temporary ``NEURFLOW_HOME``, free ports, ``--heap``), so no mode sees another's data:

=================  ==============================================================================
mode               what
=================  ==============================================================================
``before``         the loader as it was: one managed transaction per statement batch, MERGE for
                   every node and relationship, each class MERGEs its shared nodes (batch 2000)
``atomic``         one managed transaction per class; class-owned nodes and relationships CREATEd
                   into the freshly cleaned class; shared nodes MERGEd by each class
``shared-once``    ``atomic`` + the shared Model/Layer/Neuron nodes of all classes MERGEd once up
                   front (``write_classes``), as ``neurflow load`` of many artifacts does
``grouped-N``      ``shared-once`` with N classes per managed transaction, their rows concatenated per
                   statement (fuller UNWIND batches; each class still all-or-nothing)
``parallel-N``     ``shared-once`` with N classes written concurrently (threads)
``...@B``          the same with UNWIND batches of B rows
=================  ==============================================================================

After each mode the node and relationship counts per label/type are read back; all modes
must give the same graph (the script fails otherwise); a mode whose writes fail (parallel
writers on the embedded server) is recorded with its error. Relationships/s = relationships
written (every relationship of every statement) / wall seconds of the mode's writes.

Then the export: ``graph_of_rows`` + ``write_neo4j_admin`` of the same 200 classes (no atlas):
seconds and bytes of the CSV files.

Usage::

    python benchmarks/bench_load.py                                   # 200 classes, every mode
    python benchmarks/bench_load.py --classes 20 --modes before atomic --json /tmp/l.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_queries import FINGERPRINT, MODEL_NAME, SHAPE, _free_port, synth_circuit  # noqa: E402  (the generator of bench_queries)

MODES = ("before", "atomic", "shared-once", "shared-once@2000", "grouped-25", "grouped-25@2000", "parallel-2")

LABELS = ("Model", "Layer", "Neuron", "Class", "SemanticGroup", "NeuronGroup", "Patch", "GroupPaths", "Run")
TYPES = ("HAS_LAYER", "FEEDS", "IN_LAYER", "OF_MODEL", "LOGIT", "HAS_SEMANTIC_GROUP", "CONTRIBUTES", "MEMBER_OF", "FLOWS_TO", "EXEMPLAR", "ROOT",
         "HAS_GROUP", "BUILT_BY")


def synth_rows(n: int, seed: int) -> list:
    from neurflow.ingest.graph.rows import circuit_rows

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = synth_circuit(rng, i, tau=SHAPE["tau"], n_exemplars=SHAPE["exemplars"])
        out.append(circuit_rows(c, run={"uid": f"run-synth-{i:05d}", "started": "2025-01-01T00:00:00Z", "seconds": 300.0, "device": "cpu"}))
    return out


def counts(conn) -> dict[str, int]:
    out = {}
    for label in LABELS:
        records, _, _ = conn.driver.execute_query(f"MATCH (n:{label}) RETURN count(n) AS n", database_=conn.database)
        out[label] = records[0]["n"]
    for t in TYPES:
        records, _, _ = conn.driver.execute_query(f"MATCH ()-[r:{t}]->() RETURN count(r) AS n", database_=conn.database)
        out[t] = records[0]["n"]
    return out


def run_mode(mode: str, rows: list, heap: str) -> dict[str, Any]:
    """Load every class's rows into a fresh embedded server with ``mode``."""
    from neurflow.ingest import embedded_db
    from neurflow.ingest.connection import connect
    from neurflow.ingest.graph.writer import ensure_schema, write_class, write_classes

    name, _, batch = mode.partition("@")
    batch_size = int(batch) if batch else (2000 if name == "before" else 10_000)
    home = tempfile.mkdtemp(prefix=f"neurflow-bench-load-{name}-")
    os.environ["NEURFLOW_HOME"] = home
    info = embedded_db.start(port=_free_port(), http_port=_free_port(), timeout=180, heap_size=heap, exit_with=os.getpid())
    try:
        with connect(info.uri, info.user, embedded_db.password(), info.database) as conn:
            ensure_schema(conn.driver, conn.database)
            t0 = time.perf_counter()
            if name == "before":
                stats = [write_class(conn.driver, conn.database, r, batch_size=batch_size, atomic=False) for r in rows]
            elif name == "atomic":
                stats = [write_class(conn.driver, conn.database, r, batch_size=batch_size) for r in rows]
            elif name == "shared-once":
                stats = write_classes(conn.driver, conn.database, rows, batch_size=batch_size)
            elif name.startswith("grouped-"):
                stats = write_classes(conn.driver, conn.database, rows, batch_size=batch_size, classes_per_transaction=int(name.split("-")[1]))
            elif name.startswith("parallel-"):
                stats = write_classes(conn.driver, conn.database, rows, batch_size=batch_size, workers=int(name.split("-")[1]))
            else:
                raise SystemExit(f"unknown mode {mode}")
            seconds = time.perf_counter() - t0
            got = counts(conn)
    finally:
        embedded_db.stop(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    rels = sum(got[t] for t in TYPES)  # the graph's, the same in every mode (per-class stats leave out shared-once's)
    per_class = sorted(s.seconds for s in stats)
    return {"mode": mode, "batch_size": batch_size, "seconds": round(seconds, 1), "relationships": rels, "relationships_per_second": round(rels / seconds),
            "class_seconds_p50": round(per_class[len(per_class) // 2], 3), "class_seconds_max": round(per_class[-1], 3), "counts": got}


def run_export(rows: list) -> dict[str, Any]:
    from neurflow.ingest.graph.export import graph_of_rows, write_neo4j_admin

    out = Path(tempfile.mkdtemp(prefix="neurflow-bench-export-"))
    try:
        t0 = time.perf_counter()
        nodes, rels = graph_of_rows(rows)
        t1 = time.perf_counter()
        res = write_neo4j_admin(nodes, rels, out)
        t2 = time.perf_counter()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"nodes": res.nodes, "relationships": res.relationships, "files": len(res.node_files) + len(res.relationship_files), "bytes": res.bytes,
            "graph_seconds": round(t1 - t0, 2), "write_seconds": round(t2 - t1, 2), "relationships_per_second": round(res.relationships / (t2 - t0))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=200, help="synthetic paper-depth classes (default 200)")
    parser.add_argument("--modes", nargs="*", default=list(MODES), help=f"write modes, in order (default: {' '.join(MODES)})")
    parser.add_argument("--heap", default="2g", help="JVM heap of the embedded server (default 2g)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "load.json")
    args = parser.parse_args(argv)
    from neurflow.errors import DatabaseError

    load_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    rows = synth_rows(args.classes, args.seed)
    synth_s = time.perf_counter() - t0
    print(f"{args.classes} classes synthesised in {synth_s:.0f} s; exporting ...", file=sys.stderr, flush=True)
    export = run_export(rows)
    print(f"  export: {export}", file=sys.stderr, flush=True)
    results = []
    for mode in args.modes:
        print(f"loading with {mode} ...", file=sys.stderr, flush=True)
        try:
            r = run_mode(mode, rows, args.heap)
        except DatabaseError as exc:  # e.g. parallel writers giving up on ArcadeDB's concurrent-modification retries
            print(f"  {mode}: FAILED: {exc}", file=sys.stderr, flush=True)
            results.append({"mode": mode, "failed": str(exc)})
            continue
        print(f"  {mode}: {r['relationships']} relationships in {r['seconds']} s = {r['relationships_per_second']}/s", file=sys.stderr, flush=True)
        results.append(r)
    done = [r for r in results if "failed" not in r]
    reference = done[0]["counts"] if done else {}
    same = all(r["counts"] == reference for r in done)
    doc = {
        "benchmark": "load",
        "workload": {"classes": args.classes, "shape": "paper", "layers": len(SHAPE["layers"]), "generator": "benchmarks/bench_queries.py synth_circuit",
                     "model": f"{MODEL_NAME}@{FINGERPRINT.split(':')[-1][:12]}", "seed": args.seed, "heap": args.heap,
                     "rows": sum(len(v) for r in rows for v in r.rows.values())},
        "modes": results,
        "same_graph_in_every_mode": same,
        "export": export,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(), "database": "embedded ArcadeDB (Bolt)",
                    "load_average_start": load_start, "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{'mode':<20} {'batch':>6} {'seconds':>8} {'rels':>8} {'rels/s':>8} {'class p50 s':>11}")
    for r in done:
        print(f"{r['mode']:<20} {r['batch_size']:>6} {r['seconds']:>8} {r['relationships']:>8} {r['relationships_per_second']:>8} {r['class_seconds_p50']:>11}")
    print(f"\nexport: {export['nodes']} nodes, {export['relationships']} relationships, {export['bytes'] / 1e6:.1f} MB in "
          f"{export['graph_seconds'] + export['write_seconds']:.1f} s")
    print(f"same graph in every mode: {same}\nJSON: {args.json}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
