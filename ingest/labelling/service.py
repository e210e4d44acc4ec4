"""Label classes (stores beside the artifacts) and write stored labels to the graph."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, NeurflowError
from .base import ClassJob, Labeller, class_job, now
from .store import ClassLabels, artifact_checksum, read_class_labels, write_class_labels

__all__ = ["LabelOutcome", "LabellerError", "FULLTEXT_INDEX", "ensure_label_index", "label_classes", "plan_requests", "write_labels", "LABEL_WRITES", "label_rows"]


class LabellerError(NeurflowError):
    """A labeller failed (a server error, a malformed answer, a missing key, the request cap)."""

    default_message = "labelling failed"
    exit_code = 5


@dataclass
class LabelOutcome:
    """What happened to one class: ``labelled`` or ``cached`` (stored labels of the same
    source, for this artifact, reused)."""

    directory: Path
    class_name: str
    status: str
    n_groups: int = 0
    n_relations: int = 0
    labels: ClassLabels | None = None


def _covers(stored: ClassLabels, job: ClassJob) -> bool:
    return all((g.layer, g.index) in stored.groups for g in job.groups)


def label_classes(
    artifact_dirs: Sequence[Path],
    labeller: Labeller,
    *,
    layers: Sequence[str] | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[LabelOutcome]:
    """Label the neuron groups and FLOWS_TO relations of class artifacts; no database.

    Each class's labels are written beside its artifact (``labels.json``, with the artifact's
    checksum) as soon as the class is done; a class whose stored labels come from the same
    labeller source, cover the requested layers and match the artifact is skipped unless
    ``force``. With ``layers``, stored labels of the other layers are kept.

    Args:
        artifact_dirs: artifact folders, or folders above them.
        labeller: an :class:`~neurflow.ingest.labelling.AnnotationsLabeller`,
            :class:`~neurflow.ingest.labelling.OpenAILabeller` or another :class:`Labeller`.
        layers: only label groups of these layers (default: every layer).
        force: label again even when stored labels could be reused.

    Returns:
        One :class:`LabelOutcome` per class, in artifact order.

    Raises:
        LabellerError / InputError / ArtifactError: the run stops at the first failing class;
            the classes before it keep their stores, the failing one is not written.
    """
    from ..pipeline import find_artifacts

    outcomes = []
    for directory in find_artifacts([Path(d) for d in artifact_dirs]):
        job = class_job(directory, tuple(layers) if layers else None)
        unknown = [layer for layer in layers or () if layer not in job.layers]
        if unknown:
            raise InputError(f"layer(s) {', '.join(unknown)} are not in the circuit of '{job.class_name}' (its layers: {', '.join(job.layers)})")
        checksum = artifact_checksum(directory)
        stored = read_class_labels(directory)
        if stored is not None and not force and stored.source == labeller.source and _covers(stored, job):
            outcomes.append(LabelOutcome(directory, job.class_name, "cached", len(stored.groups), len(stored.relations), stored))
            if log:
                log(f"  {job.class_name}: {len(stored.groups)} groups already labelled by {stored.source}, reused")
            continue
        groups, relations = labeller.label_class(job)
        if layers and stored is not None:  # keep what other layers already had
            groups = {**{k: v for k, v in stored.groups.items() if k[0] not in layers}, **groups}
            relations = {**{k: v for k, v in stored.relations.items() if k[0] not in layers and k[2] not in layers}, **relations}
        labels = ClassLabels(checksum or "", labeller.source, now(), groups, relations)
        write_class_labels(directory, labels)
        outcomes.append(LabelOutcome(directory, job.class_name, "labelled", len(groups), len(relations), labels))
        if log:
            log(f"  {job.class_name}: labelled {len(groups)} groups and {len(relations)} relations ({labeller.source})")
    return outcomes


def plan_requests(artifact_dirs: Sequence[Path], labeller: Labeller, *, layers: Sequence[str] | None = None, force: bool = False) -> dict[str, int]:
    """``--dry-run``: how many requests :func:`label_classes` would send per class (0 for a
    class whose stored labels would be reused, and for labellers that send none)."""
    from ..pipeline import find_artifacts

    counts: dict[str, int] = {}
    count = getattr(labeller, "count_requests", None)
    for directory in find_artifacts([Path(d) for d in artifact_dirs]):
        job = class_job(directory, tuple(layers) if layers else None)
        stored = read_class_labels(directory)
        reused = stored is not None and not force and stored.source == labeller.source and _covers(stored, job)
        counts[job.class_name] = 0 if reused or count is None else int(count(job))
    return counts


# One transaction per class: clear the class's labels, then set the stored ones.
LABEL_WRITES: tuple[tuple[str, str], ...] = (
    (
        "clear_groups",
        "MATCH (g:NeuronGroup {class: $cls}) SET g.label = null, g.description = null, g.label_score = null, g.label_runner_up = null, "
        "g.part_of_class = null, g.label_source = null, g.labelled_at = null, g.caption = g.layer + ' g' + toString(g.index)",
    ),
    ("clear_relations", "MATCH (g:NeuronGroup {class: $cls})-[e:FLOWS_TO]->(:NeuronGroup) SET e.relation = null"),
    ("groups", "UNWIND $groups AS r MATCH (g:NeuronGroup {uid: r.uid}) WHERE g.class = $cls SET g += r.props RETURN count(g) AS n"),
    (
        "relations",
        "UNWIND $relations AS r MATCH (a:NeuronGroup {uid: r.child}) MATCH (a)-[e:FLOWS_TO]->(b:NeuronGroup {uid: r.parent}) SET e.relation = r.relation",
    ),
)


def label_rows(model: str, class_index: int, labels: ClassLabels) -> dict:
    """Parameters of :data:`LABEL_WRITES` for one class (pure)."""
    from ..graph.rows import label_props
    from ..graph.schema import class_uid, group_uid

    cls = class_uid(model, class_index)
    return {
        "cls": cls,
        "groups": [{"uid": group_uid(cls, layer, index), "props": label_props(layer, index, g)} for (layer, index), g in sorted(labels.groups.items())],
        "relations": [
            {"child": group_uid(cls, cl, ci), "parent": group_uid(cls, pl, pi), "relation": r.relation}
            for (cl, ci, pl, pi), r in sorted(labels.relations.items())
        ],
    }


#: Neo4j 5's full-text index over labels (queries/find_concept_fulltext.cypher). The embedded
#: database has no full-text indexes: there the statement fails and find_concept (portable,
#: no index) is the way to search.
FULLTEXT_INDEX = "CREATE FULLTEXT INDEX label_text IF NOT EXISTS FOR (n:NeuronGroup|Concept) ON EACH [n.label, n.description]"


def ensure_label_index(driver, database: str | None) -> bool:
    """Create the full-text index ``label_text`` where the database supports it.

    Returns:
        True when the index exists (Neo4j 5), False where the database has no full-text
        indexes (the embedded server).
    """
    from ..errors import DatabaseError
    from ..graph.writer import run_write

    try:
        run_write(driver, database, FULLTEXT_INDEX)
    except DatabaseError as exc:
        if "index" in str(exc).lower() or "syntax" in str(exc).lower():
            return False
        raise
    return True


def write_labels(conn, artifact_dirs: Sequence[Path], *, log: Callable[[str], None] | None = None) -> dict[str, int]:
    """Write the stored labels of artifacts to the graph, one managed transaction per class.

    Only labels made for the artifact as it is are written (see
    :func:`~neurflow.ingest.labelling.read_labels`); a class with none gets its labels
    cleared. Returns ``{class uid: groups labelled in the graph}`` (0 for a class not loaded).
    """
    import neo4j

    from neurflow.artifact import load_circuit

    from ..graph.errors import translating_errors
    from ..graph.schema import model_uid
    from ..pipeline import find_artifacts

    ensure_label_index(conn.driver, conn.database)
    written: dict[str, int] = {}
    for directory in find_artifacts([Path(d) for d in artifact_dirs]):
        circuit = load_circuit(directory)
        stored = read_class_labels(directory) or ClassLabels("", "", "")
        params = label_rows(model_uid(circuit.model_name, circuit.model_fingerprint), circuit.class_index, stored)

        def work(tx, params=params):
            matched = 0
            for name, statement in LABEL_WRITES:
                result = tx.run(statement, **params)
                if name == "groups":
                    record = result.single()
                    matched = int(record["n"]) if record is not None else 0
                else:
                    result.consume()
            return matched

        with translating_errors("writing labels"), conn.driver.session(database=conn.database, default_access_mode=neo4j.WRITE_ACCESS) as session:
            matched = session.execute_write(work)
        written[params["cls"]] = matched
        if log and params["groups"] and matched == 0:
            log(f"  {circuit.class_name}: not in the graph (load it first: neurflow load {directory}); its labels stay beside the artifact")
        elif log:
            log(f"  {circuit.class_name}: {matched} group labels and {len(params['relations'])} relations in the graph")
    return written
