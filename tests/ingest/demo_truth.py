"""Ground truth of the demo world for tests: what a group's exemplar patches show."""

from __future__ import annotations

from collections import defaultdict


def exemplar_concepts(world, circuit, group) -> dict[str, float]:
    """Mean share of each concept's pixels in the group's exemplar boxes (the generator's
    concept maps; the demo computes every circuit from the world's val split)."""
    from neurflow.ingest.demo.world import concept_fractions

    totals: dict[str, float] = defaultdict(float)
    for p in group.exemplar_ids:
        image = f"val/{circuit.image_ids[int(circuit.patches.image_index[p])]}"
        box = tuple(int(v) for v in circuit.patches.boxes[p])
        for concept, frac in concept_fractions(world, image, box).items():
            totals[concept] += frac / len(group.exemplar_ids)
    return dict(totals)
