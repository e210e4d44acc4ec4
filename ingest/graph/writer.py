"""Write circuits to a Neo4j-5-compatible graph through the official ``neo4j`` driver.

Writes follow the driver manual and neo4j-graphrag's writer, minus its two flaws: no
network call happens in a constructor (call :func:`ensure_schema` explicitly), and errors
are raised as :class:`~neurflow.errors.DatabaseError` (:func:`.errors.translating_errors`),
not swallowed.

* Every value travels as a query parameter, in ``UNWIND $rows AS r`` batches; no value is
  ever formatted into Cypher text. The statements are declared once in :mod:`.statements`.
* A class is written in ONE managed transaction (``session.execute_write``, retried by the
  driver on transient errors): its previous subgraph is deleted (:data:`CLASS_CLEANUP`),
  the shared Model/Layer/Neuron nodes are MERGEd, the class's own nodes and relationships
  are CREATEd (nothing of the class is left to match after the cleanup, so MERGE's lookup
  is wasted work), and the class is marked ``complete``. A retried or killed transaction
  leaves the graph as it was, so a re-run ends as an uninterrupted load would.
* ``atomic=False`` keeps the earlier behaviour, one managed transaction per batch with MERGE
  everywhere (the class marked incomplete until its last write): for servers that cannot
  hold a whole class in one transaction, and as the benchmark's "before".
* Loading many classes (:func:`write_classes`) MERGEs the shared nodes of all of them once
  up front; each class's transaction then only reads them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import neo4j

from .errors import translating_errors
from .rows import GraphRows
from .schema import SCHEMA
from .statements import LOAD_WRITES, SHARED, WRITES, Write

__all__ = [
    "SCHEMA", "WRITES", "CLASS_CLEANUP", "CLASS_DEBUG_PROPS", "CLASS_EVAL_PROPS", "MARK_COMPLETE", "DEFAULT_BATCH", "WriteStats", "batched",
    "ensure_schema", "write_class", "write_classes", "write_shared", "run_write", "write_evaluation_summary",
]

#: Rows per UNWIND batch. Neo4j's manual suggests 10k-50k rows per transaction for bulk
#: writes (docs/loading.md); a class rarely has more rows in one statement, so one batch each.
DEFAULT_BATCH = 10_000

#: Class properties `neurflow debug` owns: a reload (a possibly recomputed circuit) clears them
#: with the groups they describe.
CLASS_DEBUG_PROPS: tuple[str, ...] = (
    "debugged_at", "debug_n_tp", "debug_n_fp", "debug_verdict", "debug_min_fp", "debug_alpha", "debug_fdr_scope", "debug_n_tests", "bias_threshold",
)

#: Class properties `neurflow evaluate` owns (:func:`write_evaluation_summary`, the only
#: writer allowed to set them; ``eval_*`` from ``neurflow.evaluation.EvaluationSummary`` plus
#: the run's bookkeeping): a reload clears them, since they describe the circuit that was.
CLASS_EVAL_PROPS: tuple[str, ...] = (
    "eval_faithful", "eval_optimality_diff", "eval_optimality_ci_low", "eval_fidelity_mask_core", "eval_fidelity_mask_random",
    "eval_fidelity_retain_core", "eval_fidelity_retain_random", "eval_correlation_spearman", "eval_correlation_pearson",
    "eval_experiments", "eval_seed", "eval_dir", "evaluated_at",
)

#: Delete what one class owns (parameter: $cls). Neurons, layers and the model are shared;
#: the Class node stays (its uid is stable) without its debug and evaluation properties.
CLASS_CLEANUP: tuple[str, ...] = (
    "MATCH (c:Class {uid: $cls}) SET c.complete = false",
    "MATCH (c:Class {uid: $cls}) REMOVE " + ", ".join(f"c.{p}" for p in (*CLASS_DEBUG_PROPS, *CLASS_EVAL_PROPS)),
    "MATCH (s:SemanticGroup {class: $cls}) DETACH DELETE s",
    "MATCH (g:NeuronGroup {class: $cls}) DETACH DELETE g",
    "MATCH (t:GroupPaths {class: $cls}) DETACH DELETE t",
    "MATCH (p:Patch {class: $cls}) DETACH DELETE p",
    "MATCH (c:Class {uid: $cls})-[b:BUILT_BY]->(:Run) DELETE b",
    "MATCH (run:Run) WHERE NOT EXISTS { (run)<-[:BUILT_BY]-(:Class) } DELETE run",
)

MARK_COMPLETE = "MATCH (c:Class {uid: $cls}) SET c.complete = true, c.loaded_at = $loaded_at"

CLASS_EXISTS = "MATCH (c:Class {uid: $cls}) RETURN count(c) AS n"
CLASS_EVAL = "MATCH (c:Class {uid: $cls}) SET c += $props"
RUN_EVAL = "MATCH (:Class {uid: $cls})-[:BUILT_BY]->(run:Run) SET run += $props"


@dataclass
class WriteStats:
    """What one load wrote: rows per statement, relationships, and the time it took."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    relationships: int = 0


def batched(rows: Sequence[dict], size: int) -> Iterator[list[dict]]:
    """Consecutive slices of at most ``size`` rows."""
    if size < 1:
        raise ValueError("batch size must be positive")
    for i in range(0, len(rows), size):
        yield list(rows[i : i + size])


def run_write(driver: neo4j.Driver, database: str | None, query: str, **params: object) -> None:
    """One statement in its own managed write transaction (retried by the driver on transient errors).

    Raises:
        DatabaseUnavailable / AuthenticationFailed / DatabaseError with a message that
        names the statement's first words, never its parameters.
    """
    head = " ".join(query.split()[:8])
    with translating_errors(f"write [{head} ...]"):
        driver.execute_query(query, parameters_=params, database_=database, routing_=neo4j.RoutingControl.WRITE)


def ensure_schema(driver: neo4j.Driver, database: str | None) -> None:
    """Create the constraints and indexes if they do not exist (idempotent)."""
    for statement in SCHEMA:
        run_write(driver, database, statement)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_shared(driver: neo4j.Driver, database: str | None, rows: Iterable[GraphRows], *, batch_size: int = DEFAULT_BATCH) -> int:
    """MERGE the shared nodes (model, layers, neurons) of many classes at once, each once.

    Returns:
        The number of distinct shared rows written.
    """
    merged: dict[str, dict[object, dict]] = {name: {} for name in ("model", "layer", "layer_feeds", "neuron")}
    for r in rows:
        for name, table in merged.items():
            for row in r.rows.get(name, ()):
                table.setdefault(row.get("uid") or (row["lower"], row["upper"]), row)
    total = 0
    with translating_errors("writing the shared model, layer and neuron nodes"):
        with driver.session(database=database, default_access_mode=neo4j.WRITE_ACCESS) as session:
            for name, table in merged.items():
                for batch in batched(list(table.values()), batch_size):
                    session.execute_write(_run_batch, WRITES[name], batch)
                total += len(table)
    return total


def _run_batch(tx: neo4j.ManagedTransaction, query: str, batch: list[dict]) -> None:
    tx.run(query, rows=batch).consume()


def write_class(
    driver: neo4j.Driver, database: str | None, rows: GraphRows, *, batch_size: int = DEFAULT_BATCH, progress: object | None = None,
    atomic: bool = True, shared: bool = True,
) -> WriteStats:
    """Replace one class's subgraph with ``rows``.

    Args:
        batch_size: rows per UNWIND statement.
        progress: optional bar with ``update(n)`` (rows written).
        atomic: the whole class in one managed transaction (default), or one per batch
            (see the module docstring).
        shared: also MERGE the shared model/layer/neuron rows (False when
            :func:`write_shared` already did).

    Returns:
        The rows written per statement, the relationships and the elapsed seconds.
    """
    start = time.perf_counter()
    stats = WriteStats()
    order = [w for w in LOAD_WRITES if w.name not in SHARED or w.name == "class" or shared]
    first = [w for w in order if w.name in SHARED]
    rest = [w for w in order if w.name not in SHARED]
    if atomic:

        def work(tx: neo4j.ManagedTransaction) -> None:
            for w in first:
                _tx_rows(tx, w.cypher(), rows.rows.get(w.name, []), batch_size, progress)
            for statement in CLASS_CLEANUP:
                tx.run(statement, cls=rows.cls).consume()
            for w in rest:
                _tx_rows(tx, w.cypher(fresh=True), rows.rows.get(w.name, []), batch_size, progress)
            tx.run(MARK_COMPLETE, cls=rows.cls, loaded_at=_now()).consume()

        with translating_errors(f"loading class {rows.cls}", unavailable_note="; nothing of this class was written"):
            with driver.session(database=database, default_access_mode=neo4j.WRITE_ACCESS) as session:
                session.execute_write(work)
    else:
        # The Class node must exist before cleanup marks it; MERGE of model/layers/neurons first.
        for w in first:
            _write_rows(driver, database, w, rows, batch_size, progress)
        for statement in CLASS_CLEANUP:
            run_write(driver, database, statement, cls=rows.cls)
        for w in rest:
            _write_rows(driver, database, w, rows, batch_size, progress)
        run_write(driver, database, MARK_COMPLETE, cls=rows.cls, loaded_at=_now())
    for w in order:
        n = rows.count(w.name)
        stats.rows[w.name] = n
        stats.relationships += w.relationships(n)
    stats.seconds = time.perf_counter() - start
    return stats


def write_classes(
    driver: neo4j.Driver, database: str | None, rows: Sequence[GraphRows], *, batch_size: int = DEFAULT_BATCH, workers: int = 1,
    classes_per_transaction: int = 1,
) -> list[WriteStats]:
    """Load many classes: their shared nodes once (:func:`write_shared`), then each class atomically.

    Args:
        classes_per_transaction: classes written together in one managed transaction, their
            rows concatenated per statement (fewer, fuller UNWIND batches, closer to the
            10k-row batches Neo4j recommends). Each class is still all-or-nothing; a failure
            rolls back the whole group.
        workers: classes written concurrently (threads sharing the driver's pool). Classes
            own disjoint nodes, but each also adds relationships to shared nodes (its Model,
            its neurons), which a server may serialise or reject as concurrent
            modifications (retried by the driver when the server calls them transient);
            benchmarks/bench_load.py measures whether it pays.

    Returns:
        One :class:`WriteStats` per class, in order.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if classes_per_transaction < 1:
        raise ValueError("classes_per_transaction must be at least 1")
    if classes_per_transaction > 1 and len({r.cls for r in rows}) != len(rows):
        raise ValueError("a class appears twice; load one artifact per class when writing several classes per transaction")
    write_shared(driver, database, rows, batch_size=batch_size)
    groups = [list(rows[i : i + classes_per_transaction]) for i in range(0, len(rows), classes_per_transaction)]

    def one(group: list[GraphRows]) -> list[WriteStats]:
        if len(group) == 1:
            return [write_class(driver, database, group[0], batch_size=batch_size, shared=False)]
        return _write_group(driver, database, group, batch_size)

    if workers == 1:
        return [s for g in groups for s in one(g)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [s for part in pool.map(one, groups) for s in part]


#: :data:`CLASS_CLEANUP` for a list of classes (parameter ``$classes``), derived from it.
_CLEANUP_MANY: tuple[str, ...] = tuple(f"UNWIND $classes AS cls {q.replace('$cls', 'cls')}" if "$cls" in q else q for q in CLASS_CLEANUP)
_COMPLETE_MANY = "UNWIND $classes AS cls " + MARK_COMPLETE.replace("$cls", "cls")


def _write_group(driver: neo4j.Driver, database: str | None, group: list[GraphRows], batch_size: int) -> list[WriteStats]:
    """Several classes (shared nodes already written) in one managed transaction."""
    start = time.perf_counter()
    classes = [r.cls for r in group]
    writes = [w for w in LOAD_WRITES if w.name not in SHARED or w.name == "class"]

    def work(tx: neo4j.ManagedTransaction) -> None:
        for w in writes:
            if w.name == "class":
                _tx_rows(tx, w.cypher(), [x for r in group for x in r.rows.get(w.name, [])], batch_size, None)
                for statement in _CLEANUP_MANY:
                    tx.run(statement, classes=classes).consume()
            else:
                _tx_rows(tx, w.cypher(fresh=True), [x for r in group for x in r.rows.get(w.name, [])], batch_size, None)
        tx.run(_COMPLETE_MANY, classes=classes, loaded_at=_now()).consume()

    with translating_errors(f"loading classes {classes[0]} .. {classes[-1]}", unavailable_note="; nothing of these classes was written"):
        with driver.session(database=database, default_access_mode=neo4j.WRITE_ACCESS) as session:
            session.execute_write(work)
    seconds = (time.perf_counter() - start) / len(group)
    out = []
    for r in group:
        st = WriteStats(seconds=seconds)
        for w in writes:
            st.rows[w.name] = r.count(w.name)
            st.relationships += w.relationships(st.rows[w.name])
        out.append(st)
    return out


def _tx_rows(tx: neo4j.ManagedTransaction, query: str, data: list[dict], batch_size: int, progress: object | None) -> None:
    for batch in batched(data, batch_size):
        tx.run(query, rows=batch).consume()
        if progress is not None:
            progress.update(len(batch))  # type: ignore[attr-defined]


def _write_rows(driver: neo4j.Driver, database: str | None, w: Write, rows: GraphRows, batch_size: int, progress: object | None) -> None:
    for batch in batched(rows.rows.get(w.name, []), batch_size):
        run_write(driver, database, w.cypher(), rows=batch)
        if progress is not None:
            progress.update(len(batch))  # type: ignore[attr-defined]


def write_evaluation_summary(driver: neo4j.Driver, database: str | None, cls: str, props: dict[str, object]) -> bool:
    """Set a class's evaluation summary (``neurflow evaluate``) on its Class node and its Run node.

    Only :data:`CLASS_EVAL_PROPS` may be set, so that a reload of the class (a recomputed
    circuit) clears every one of them.

    Args:
        cls: the Class uid (:func:`~neurflow.ingest.graph.schema.class_uid`).
        props: property -> primitive value or list of primitives (``EvaluationSummary.properties()``
            plus ``evaluated_at``, ``eval_experiments``, ``eval_seed``, ``eval_dir``).

    Returns:
        False (and nothing written) when the class is not in the graph.

    Raises:
        ValueError: a property outside :data:`CLASS_EVAL_PROPS`.
        DatabaseError: the database failed (both nodes are set in one transaction, or neither).
    """
    unknown = sorted(set(props) - set(CLASS_EVAL_PROPS))
    if unknown:
        raise ValueError(f"not evaluation properties (add them to CLASS_EVAL_PROPS so a reload clears them): {', '.join(unknown)}")
    with translating_errors(f"reading class {cls}"):
        records, _, _ = driver.execute_query(CLASS_EXISTS, parameters_={"cls": cls}, database_=database, routing_=neo4j.RoutingControl.READ)
    if not records or int(records[0]["n"]) == 0:
        return False

    def work(tx: neo4j.ManagedTransaction) -> None:
        tx.run(CLASS_EVAL, cls=cls, props=props).consume()
        tx.run(RUN_EVAL, cls=cls, props=props).consume()

    with translating_errors("writing the evaluation summary", unavailable_note="; the summary is on disk, nothing was written to the graph"):
        with driver.session(database=database, default_access_mode=neo4j.WRITE_ACCESS) as session:
            session.execute_write(work)
    return True
