"""Concept labels (paper Section 5.2): neuron groups and FLOWS_TO relations described in words.

* :class:`GroupLabel` / :func:`read_labels`: the labels stored beside a class artifact
  (``labels.json``), returned only when they were made for the artifact as it is now;
* labellers behind one small interface (:class:`Labeller`): :class:`AnnotationsLabeller`
  (offline, per-pixel concept annotations; :func:`demo_annotations` for the demo world) and
  :class:`OpenAILabeller` (any OpenAI-compatible chat-completions server with image input);
* :func:`label_classes` labels artifacts (no database), :func:`write_labels` writes the
  stored labels to the graph; ``neurflow load`` restores them by itself.
"""

from .annotations import MIXED_THRESHOLD, AnnotationSet, AnnotationsLabeller, demo_annotations, group_concept_shares, read_annotations
from .base import ClassJob, GroupView, Labeller, class_job, template_relation
from .openai import PROMPT_VERSION, OpenAILabeller
from .service import LabellerError, LabelOutcome, label_classes, plan_requests, write_labels
from .store import LABELS_FILE, ClassLabels, GroupLabel, RelationLabel, artifact_checksum, read_class_labels, read_labels

__all__ = [
    "AnnotationSet",
    "AnnotationsLabeller",
    "ClassJob",
    "ClassLabels",
    "GroupLabel",
    "GroupView",
    "LABELS_FILE",
    "LabelOutcome",
    "Labeller",
    "LabellerError",
    "MIXED_THRESHOLD",
    "OpenAILabeller",
    "PROMPT_VERSION",
    "RelationLabel",
    "artifact_checksum",
    "class_job",
    "demo_annotations",
    "group_concept_shares",
    "label_classes",
    "plan_requests",
    "read_annotations",
    "read_class_labels",
    "read_labels",
    "template_relation",
    "write_labels",
]
