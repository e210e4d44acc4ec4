"""The concept atlas (``neurflow.atlas``): cross-class concepts built by construction."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neurflow.atlas import build_atlas


def _twin(circuit, class_index: int, scale: float):
    """The same circuit for another class, every representative vector ``scale`` times longer."""
    groups = tuple(dataclasses.replace(sg, vector=sg.vector * scale) for sg in circuit.semantic_groups)
    return dataclasses.replace(circuit, class_index=class_index, class_name=f"twin{class_index}", semantic_groups=groups)


def _concept_of(atlas):
    return {(a.class_index, a.neuron, a.semantic_group): a.concept for a in atlas.assignments}


def test_concepts_are_directions_a_longer_twin_shares_every_concept(tiny_circuit):
    """A class whose semantic groups point the same way, only 7x stronger, uses exactly the same
    concepts: each group lands in its original's concept, and every concept has both classes."""
    twin = _twin(tiny_circuit, tiny_circuit.class_index + 1, 7.0)
    atlas = build_atlas([tiny_circuit, twin])
    concept = _concept_of(atlas)
    for sg in tiny_circuit.semantic_groups:
        assert concept[(tiny_circuit.class_index, sg.neuron, sg.index)] == concept[(twin.class_index, sg.neuron, sg.index)]
    assert all(k.classes == (tiny_circuit.class_index, twin.class_index) for k in atlas.concepts)
    for a in atlas.assignments:
        assert 0.0 <= a.distance <= 2.0
    # the concepts of the pair are those of the class alone (the twin only doubles every point)
    alone = build_atlas([tiny_circuit, _twin(tiny_circuit, tiny_circuit.class_index + 1, 1.0)])
    assert _concept_of(alone) == concept


def test_centres_are_means_of_unit_vectors(tiny_circuit):
    twin = _twin(tiny_circuit, tiny_circuit.class_index + 1, 3.0)
    atlas = build_atlas([tiny_circuit, twin])
    vectors = {(c.class_index, sg.neuron, sg.index): sg.vector / np.linalg.norm(sg.vector) for c in (tiny_circuit, twin) for sg in c.semantic_groups}
    for k in atlas.concepts:
        members = [vectors[(a.class_index, a.neuron, a.semantic_group)] for a in atlas.assignments if a.neuron.layer == k.layer and a.concept == k.index]
        assert len(members) == k.size
        np.testing.assert_allclose(k.vector, np.mean(members, axis=0), rtol=1e-5, atol=1e-6)


def test_atlas_refuses_mixed_models_and_duplicate_classes(tiny_circuit):
    other = dataclasses.replace(tiny_circuit, class_index=tiny_circuit.class_index + 1, model_fingerprint="sha256:" + "0" * 64)
    with pytest.raises(ValueError, match="different model fingerprints"):
        build_atlas([tiny_circuit, other])
    with pytest.raises(ValueError, match="same class"):
        build_atlas([tiny_circuit, tiny_circuit])
