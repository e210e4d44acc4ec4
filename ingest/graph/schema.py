"""The graph's identities: every node label, its ``uid`` builder, and the schema statements.

Every node has a ``uid`` property built here and nowhere else, so the loader, the export,
the concept atlas, the debugger, the labellers and the queries agree on identities. Queries
identify nodes by ``uid``, never by ``id()``/``elementId()`` (the embedded server changes
``elementId()`` when labels change).

=================  ===========================================  ==============================
label              uid                                          owned by
=================  ===========================================  ==============================
Model              ``{name}@{fingerprint[:12]}``                shared
Layer              ``{model}/{layer}``                          shared by the model
Neuron             ``{model}/{layer}/{channel}``                shared by every class
Class              ``{model}/c{index}``                         the class
SemanticGroup      ``{class}/{layer}/{channel}/s{j}``           the class
NeuronGroup        ``{class}/{layer}/g{index}``                 the class
Patch              ``{class}/p{patch_id}``                      the class (exemplars only)
GroupPaths         ``{class}/{layer}/g{index}/paths``           the class (path figures)
Run                ``run-{timestamp}-{hash}``                   the run that computed it
Concept            ``{model}/{layer}/k{index}``                 the model's atlas (``link``)
Image              ``{model}/img/{path}``                       the model (``debug``)
=================  ===========================================  ==============================

The Run uid is made when the artifact is computed (``run.json``) and only read here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neurflow.circuit import NeuronRef

__all__ = [
    "LABELS", "SCHEMA", "model_uid", "layer_uid", "neuron_uid", "class_uid", "sg_uid", "group_uid", "group_paths_uid", "patch_uid",
    "concept_uid", "image_uid",
]

#: Every node label the platform writes; each has a uniqueness constraint on ``uid``.
LABELS: tuple[str, ...] = ("Model", "Layer", "Neuron", "Class", "SemanticGroup", "NeuronGroup", "Patch", "Run", "Concept", "Image", "GroupPaths")

#: Idempotent schema: one uniqueness constraint per label on ``uid``, plus the lookup indexes
#: the class cleanup (``{class: $cls}``) and the queries use.
SCHEMA: tuple[str, ...] = (
    *(f"CREATE CONSTRAINT {label.lower()}_uid IF NOT EXISTS FOR (n:{label}) REQUIRE n.uid IS UNIQUE" for label in LABELS),
    "CREATE INDEX semantic_group_class IF NOT EXISTS FOR (n:SemanticGroup) ON (n.class)",
    "CREATE INDEX neuron_group_class IF NOT EXISTS FOR (n:NeuronGroup) ON (n.class)",
    "CREATE INDEX patch_class IF NOT EXISTS FOR (n:Patch) ON (n.class)",
    "CREATE INDEX group_paths_class IF NOT EXISTS FOR (n:GroupPaths) ON (n.class)",
    "CREATE INDEX class_name IF NOT EXISTS FOR (n:Class) ON (n.name)",
    "CREATE INDEX neuron_layer IF NOT EXISTS FOR (n:Neuron) ON (n.layer)",
)


def model_uid(name: str, fingerprint: str) -> str:
    """``{name}@{first 12 hex digits of the weights' fingerprint}``."""
    return f"{name}@{fingerprint.split(':')[-1][:12]}"


def layer_uid(model: str, layer: str) -> str:
    return f"{model}/{layer}"


def neuron_uid(model: str, neuron: NeuronRef) -> str:
    return f"{model}/{neuron.layer}/{neuron.channel}"


def class_uid(model: str, index: int) -> str:
    return f"{model}/c{index}"


def sg_uid(cls: str, neuron: NeuronRef, index: int) -> str:
    return f"{cls}/{neuron.layer}/{neuron.channel}/s{index}"


def group_uid(cls: str, layer: str, index: int) -> str:
    return f"{cls}/{layer}/g{index}"


def group_paths_uid(group: str) -> str:
    """The GroupPaths node of a neuron group (uid ``group``)."""
    return f"{group}/paths"


def patch_uid(cls: str, patch_id: int) -> str:
    return f"{cls}/p{patch_id}"


def concept_uid(model: str, layer: str, index: int) -> str:
    """An atlas concept: cluster ``index`` of the semantic groups of ``layer`` (``neurflow link``)."""
    return f"{model}/{layer}/k{index}"


def image_uid(model: str, path: str) -> str:
    """A source image that ``neurflow debug`` links to groups (``path`` relative to the data root)."""
    return f"{model}/img/{path}"
