"""NeurFlow: neuron groups and their functional interactions (Cao et al., ICLR 2025).

The method only: models, patches, activations, integrated gradients, clustering and
circuits. Nothing here knows about databases or command lines.

Typical use::

    from neurflow import CircuitConfig, build_circuit, save_circuit
    circuit = build_circuit(model, images, class_index=309, layers=["fc", "layer4.2", "layer4.1"],
                            config=CircuitConfig(tau=16, k=50, steps=50))
    save_circuit(circuit, "artifacts/resnet50/309-bee")
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Public name -> defining module. Imported on first attribute access (PEP 562), so that
# ``import neurflow`` (and the CLI in ``neurflow.ingest``) does not import torch until needed.
_EXPORTS: dict[str, str] = {
    "ArtifactError": "artifact", "is_complete": "artifact", "load_circuit": "artifact", "save_circuit": "artifact",
    "QUADRATURES": "attribution", "integrated_gradients": "attribution", "quadrature": "attribution",
    "build_circuit": "build", "select_class_images": "build",
    "AGGREGATES": "circuit", "SCHEMA_VERSION": "circuit", "Circuit": "circuit", "CircuitConfig": "circuit",
    "CoreNeurons": "circuit", "GroupEdge": "circuit", "GroupMember": "circuit", "HypertreeEdge": "circuit",
    "NeuronGroup": "circuit", "NeuronRef": "circuit", "SemanticGroup": "circuit",
    "data_fingerprint": "fingerprint", "model_fingerprint": "fingerprint",
    "knockout": "masking", "retain": "masking", "channel_mask": "masking",
    "concept_overlap": "metrics", "core_jaccard": "metrics", "group_concept_metric": "metrics", "knockout_concepts": "metrics",
    "PatchGrid": "patches", "crop_patches": "patches", "make_patch_grid": "patches",
    "LAYER_PRESETS": "presets", "preset_layers": "presets",
    "ModelSplit": "segments", "neuron_activations": "segments", "split_model": "segments",
    "build_atlas": "atlas", "debug_circuit": "debugging", "bias_score": "debugging", "assign_verdicts": "debugging",
    "DebugConfig": "debugging",
    "EvaluationConfig": "evaluation", "evaluate_circuit": "evaluation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'neurflow' has no attribute '{name}'")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover  # noqa: F401 (re-exports for type checkers)
    from .artifact import ArtifactError, is_complete, load_circuit, save_circuit
    from .atlas import build_atlas
    from .attribution import QUADRATURES, integrated_gradients, quadrature
    from .build import build_circuit, select_class_images
    from .circuit import (
        AGGREGATES,
        SCHEMA_VERSION,
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
    from .debugging import DebugConfig, assign_verdicts, bias_score, debug_circuit
    from .evaluation import EvaluationConfig, evaluate_circuit
    from .fingerprint import data_fingerprint, model_fingerprint
    from .masking import knockout, retain
    from .metrics import concept_overlap, core_jaccard, group_concept_metric, knockout_concepts
    from .patches import PatchGrid, crop_patches, make_patch_grid
    from .presets import LAYER_PRESETS, preset_layers
    from .segments import ModelSplit, neuron_activations, split_model
