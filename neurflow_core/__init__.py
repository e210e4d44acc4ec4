"""NeurFlow: neuron groups and their functional interactions (Cao et al., ICLR 2025).

The method only: models, patches, activations, integrated gradients, clustering and
circuits. Nothing here knows about databases or command lines.

Typical use::

    from neurflow import CircuitConfig, build_circuit, save_circuit
    circuit = build_circuit(model, images, class_index=309, layers=["fc", "layer4.2", "layer4.1"],
                            config=CircuitConfig(tau=16, k=50, steps=50))
    save_circuit(circuit, "artifacts/resnet50/309-bee")
"""

from .artifact import ArtifactError, is_complete, load_circuit, save_circuit
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
from .fingerprint import data_fingerprint, model_fingerprint
from .knockout import knockout, retain
from .metrics import concept_overlap, group_concept_metric, knockout_concepts
from .patches import PatchGrid, crop_patches, make_patch_grid
from .presets import LAYER_PRESETS, preset_layers
from .segments import ModelSplit, neuron_activations, split_model

__all__ = [
    "AGGREGATES", "QUADRATURES", "SCHEMA_VERSION", "LAYER_PRESETS",
    "ArtifactError", "Circuit", "CircuitConfig", "CoreNeurons", "GroupEdge", "GroupMember",
    "HypertreeEdge", "ModelSplit", "NeuronGroup", "NeuronRef", "PatchGrid", "SemanticGroup",
    "build_circuit", "concept_overlap", "crop_patches", "data_fingerprint", "group_concept_metric",
    "integrated_gradients", "is_complete", "knockout", "knockout_concepts", "load_circuit",
    "make_patch_grid", "model_fingerprint", "neuron_activations", "preset_layers", "quadrature",
    "retain", "save_circuit", "select_class_images", "split_model",
]
