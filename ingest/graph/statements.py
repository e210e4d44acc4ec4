"""Every write of ``neurflow load`` and ``neurflow link``, declared once, as data.

A :class:`Write` says which node it writes (label, properties), which relationships (type,
the two ends, properties), who owns them (``shared`` by the model and every class, owned by
one ``class`` and deleted by its cleanup, or by the model's ``atlas``) and which row keys
it reads. From that one declaration come

* its Cypher (:meth:`Write.cypher`, ``UNWIND $rows AS r ...``; values only as parameters),
  used by :mod:`.writer` and :mod:`.atlas`;
* its CSV columns in ``neurflow export --format neo4j-admin`` (:mod:`.export`);
* the relationship counts of a load (:meth:`Write.relationships`),

so the online loader and the offline export cannot drift apart, and a reader sees in one
table what the graph holds and who writes it (docs/graph-schema.md describes the same).

Relationship patterns start at the class-owned end (``anchor``): ArcadeDB expands a MERGE
from its first node, and a shared Neuron gains degree with every class (the measured
slow-down is in docs/loading.md); Neo4j picks the cheaper side either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Node", "Rel", "Write", "LOAD_WRITES", "SHARED", "ATLAS_WRITES", "WRITES", "by_name"]


@dataclass(frozen=True)
class Node:
    """The node a statement MERGEs (or, into a freshly cleaned class, CREATEs).

    Attributes:
        label: its label; ``uid`` (row key ``uid``) is its key.
        props: property name -> row key, set one by one.
        props_map: a row key holding a map of properties, set with ``+=`` (Class,
            SemanticGroup, ...: the row builders decide the property set).
        also_set: fixed Cypher assignments after the properties (``c.complete = false``);
            literals only, never values.
    """

    label: str
    props: tuple[tuple[str, str], ...] = ()
    props_map: str | None = None
    also_set: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rel:
    """A relationship ``(start)-[:type]->(end)`` whose ends are found by uid.

    Attributes:
        type: the relationship type.
        start, end: ``(label, row key of its uid)``; the key ``uid`` means the statement's own node.
        props: property name -> row key.
        anchor: the end the pattern is written from (``start`` or ``end``): the class-owned one.
    """

    type: str
    start: tuple[str, str]
    end: tuple[str, str]
    props: tuple[tuple[str, str], ...] = ()
    anchor: str = "start"


@dataclass(frozen=True)
class Write:
    """One write statement: at most one node and the relationships attached to it.

    Attributes:
        name: the row key in :class:`~neurflow.ingest.graph.rows.GraphRows` (or the atlas rows).
        owner: ``shared`` (model, layers, neurons, runs: MERGEd, never deleted by a class),
            ``class`` (deleted by the class cleanup, so a reload may CREATE it) or ``atlas``
            (replaced per model by ``neurflow link``).
        node: the node it writes, or None (relationships between existing nodes only).
        rels: the relationships it writes.
        note: what it is for, when the names do not say.
    """

    name: str
    owner: str
    node: Node | None = None
    rels: tuple[Rel, ...] = ()
    note: str = ""

    def cypher(self, *, fresh: bool = False) -> str:
        """The statement's Cypher (parameter ``$rows``: the row dicts).

        Args:
            fresh: the class's own nodes were just deleted in the same transaction
                (:func:`~neurflow.ingest.graph.writer.write_class`), so class-owned nodes and
                relationships touching one are CREATEd instead of MERGEd (no lookup of an
                existing match). Shared nodes and relationships between shared nodes
                (``OF_MODEL``, ``LOGIT``, ``BUILT_BY`` of a run) are MERGEd either way.
        """
        var: dict[tuple[str, str], str] = {}  # (label, row key) -> variable
        parts = ["UNWIND $rows AS r"]
        for rel in self.rels:
            for label, key in (rel.start, rel.end):
                if key != "uid" and (label, key) not in var:
                    var[(label, key)] = f"m{len(var)}"
                    parts.append(f"MATCH ({var[(label, key)]}:{label} {{uid: r.{key}}})")
        if self.node is not None:
            create = fresh and self.owner == "class"
            parts.append(f"{'CREATE' if create else 'MERGE'} (n0:{self.node.label} {{uid: r.uid}})")
            sets = [f"n0.{p} = r.{k}" for p, k in self.node.props]
            if self.node.props_map:
                sets.insert(0, f"n0 += r.{self.node.props_map}")
            sets += [f"n0.{s}" for s in self.node.also_set]
            if sets:
                parts.append("SET " + ", ".join(sets))
        for i, rel in enumerate(self.rels):
            a = "n0" if rel.start[1] == "uid" else var[rel.start]
            b = "n0" if rel.end[1] == "uid" else var[rel.end]
            e = f"e{i}" if rel.props else ""
            verb = "CREATE" if fresh and self._touches_class(rel) else "MERGE"
            if rel.anchor == "end":
                parts.append(f"{verb} ({b})<-[{e}:{rel.type}]-({a})")
            else:
                parts.append(f"{verb} ({a})-[{e}:{rel.type}]->({b})")
            if rel.props:
                parts.append("SET " + ", ".join(f"{e}.{p} = r.{k}" for p, k in rel.props))
        return " ".join(parts)

    def _touches_class(self, rel: Rel) -> bool:
        return any(label in CLASS_OWNED for label, _ in (rel.start, rel.end))

    def relationships(self, n_rows: int) -> int:
        """Relationships that ``n_rows`` rows of this statement write."""
        return n_rows * len(self.rels)


#: Labels one class owns (deleted by its cleanup; their uids start with the class uid).
CLASS_OWNED: frozenset[str] = frozenset({"SemanticGroup", "NeuronGroup", "Patch", "GroupPaths"})

_P = tuple  # readability of the property tables below

#: ``neurflow load``: in the order they run (a statement's MATCHed ends are written before it).
LOAD_WRITES: tuple[Write, ...] = (
    Write("model", "shared", Node("Model", _P((("name", "name"), ("fingerprint", "fingerprint"))))),
    Write("layer", "shared", Node("Layer", _P((("name", "name"), ("model", "model"), ("depth", "depth")))),
          (Rel("HAS_LAYER", ("Model", "model"), ("Layer", "uid")),)),
    Write("layer_feeds", "shared", None, (Rel("FEEDS", ("Layer", "lower"), ("Layer", "upper")),), "lower layer -> the layer above it"),
    Write("neuron", "shared", Node("Neuron", _P((("model", "model"), ("layer", "layer"), ("channel", "channel"), ("depth", "depth")))),
          (Rel("IN_LAYER", ("Neuron", "uid"), ("Layer", "layer_uid")),), "shared by every class of the model"),
    Write("class", "shared", Node("Class", props_map="props", also_set=("complete = false",)),
          (Rel("OF_MODEL", ("Class", "uid"), ("Model", "model")),),
          "not deleted by its cleanup (its evaluation and debug properties are removed instead); complete = false until MARK_COMPLETE"),
    Write("class_logit", "shared", None, (Rel("LOGIT", ("Class", "cls"), ("Neuron", "neuron")),)),
    Write("semantic_group", "class", Node("SemanticGroup", props_map="props"),
          (Rel("HAS_SEMANTIC_GROUP", ("Neuron", "neuron"), ("SemanticGroup", "uid"), anchor="end"),)),
    Write("contributes", "class", None, (Rel("CONTRIBUTES", ("Neuron", "child"), ("SemanticGroup", "sg"),
                                             _P((("weight", "weight"), ("abs_weight", "abs_weight"), ("importance", "importance"), ("rank", "rank"),
                                                 ("class", "cls"))), anchor="end"),),
          "Eq. 4: a core neuron's weight into a semantic group of the neuron one layer up"),
    Write("neuron_group", "class", Node("NeuronGroup", props_map="props")),
    Write("group_paths", "class", Node("GroupPaths", props_map="props"), (), "a group's strongest paths to the root (path_figures.py); no relationships"),
    Write("member_of", "class", None, (Rel("MEMBER_OF", ("SemanticGroup", "sg"), ("NeuronGroup", "group")),)),
    Write("flows_to", "class", None, (Rel("FLOWS_TO", ("NeuronGroup", "child"), ("NeuronGroup", "parent"),
                                          _P((("weight", "weight"), ("abs_weight", "abs_weight"), ("share", "share"), ("n_edges", "n_edges"),
                                              ("relation", "relation")))),),
          "Section 3.5: W(G_i, G_j) from a group to a group one layer up"),
    Write("patch", "class", Node("Patch", props_map="props"), (), "exemplar patches only"),
    Write("sg_exemplar", "class", None, (Rel("EXEMPLAR", ("SemanticGroup", "sg"), ("Patch", "patch"), _P((("rank", "rank"), ("activation", "activation")))),)),
    Write("group_exemplar", "class", None, (Rel("EXEMPLAR", ("NeuronGroup", "group"), ("Patch", "patch"), _P((("rank", "rank"),))),)),
    Write("class_root", "class", None, (Rel("ROOT", ("Class", "cls"), ("NeuronGroup", "group"), anchor="end"),)),
    Write("class_group", "class", None, (Rel("HAS_GROUP", ("Class", "cls"), ("NeuronGroup", "group"), anchor="end"),)),
    Write("run", "shared", Node("Run", props_map="props"), (Rel("BUILT_BY", ("Class", "cls"), ("Run", "uid")),),
          "a run may have computed several classes; the class's BUILT_BY is deleted by its cleanup, an orphaned Run with it"),
)

#: The shared statements, written before a class's cleanup (the Class node must exist to be marked).
SHARED: tuple[str, ...] = ("model", "layer", "layer_feeds", "neuron", "class")

#: ``neurflow link``: a model's concept atlas (replaced as a whole, see :mod:`.atlas`).
ATLAS_WRITES: tuple[Write, ...] = (
    Write("concept", "atlas", Node("Concept", props_map="props"), (Rel("HAS_CONCEPT", ("Model", "model"), ("Concept", "uid")),)),
    Write("expresses", "atlas", None, (Rel("EXPRESSES", ("SemanticGroup", "sg"), ("Concept", "concept"), _P((("distance", "distance"),))),)),
    Write("similar_to", "atlas", None, (Rel("SIMILAR_TO", ("NeuronGroup", "a"), ("NeuronGroup", "b"), _P((("jaccard", "jaccard"), ("shared", "shared")))),),
          "groups of different classes sharing neurons (Jaccard of their channel sets)"),
)

#: Statement name -> Cypher (MERGE form) of the load, in order; derived, never edited by hand.
WRITES: Mapping[str, str] = {w.name: w.cypher() for w in LOAD_WRITES}


def by_name(writes: tuple[Write, ...] = LOAD_WRITES) -> dict[str, Write]:
    """Statement name -> :class:`Write`."""
    return {w.name: w for w in writes}

