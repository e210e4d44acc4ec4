"""Build both NeurFlow circuits of one class (Sections 3.3-3.5, Appendix E).

The data flow: images -> patch grid D -> one streaming activation pass (spatial means of
every layer) -> per layer, top down: top-k patches of each target -> feature maps of those
patches at the layer below -> batched integrated gradients -> core neurons, semantic
groups and hypertree weights -> next layer's targets are the union of core neurons.
Then neuron groups per layer and the concept circuit's edges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .activations import feature_maps, patch_activations, to_device, top_k
from .attribution import integrated_gradients_pairs
from .circuit import (
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
from .clustering import closest_to_centre, ward_silhouette
from .fingerprint import data_fingerprint, environment, model_fingerprint
from .layout import channels_last
from .patches import PatchGrid, make_patch_grid
from .progress import ProgressFactory, stage
from .resume import HypertreeState, TransitionStore
from .segments import ModelSplit, split_model

__all__ = ["build_circuit", "select_class_images", "ProgressFactory"]




@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration; restores both afterwards."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


@torch.no_grad()
def select_class_images(model: nn.Module, images: torch.Tensor, class_index: int, *, batch_size: int = 64) -> np.ndarray:
    """Indices of the images the model classifies as ``class_index`` (D_c of Section 3.3)."""
    with _frozen(model):
        preds = [model(images[i : i + batch_size]).argmax(1).cpu() for i in range(0, len(images), batch_size)]
    if not preds:
        return np.zeros(0, dtype=np.int64)
    return np.nonzero(torch.cat(preds).numpy() == class_index)[0].astype(np.int64)


def build_circuit(
    model: nn.Module,
    images: torch.Tensor,
    class_index: int,
    layers: Sequence[str],
    config: CircuitConfig | None = None,
    *,
    model_name: str = "model",
    class_name: str | None = None,
    image_ids: Sequence[str] | None = None,
    progress: ProgressFactory | None = None,
    resume: TransitionStore | None = None,
) -> Circuit:
    """Build the hypertree and the concept circuit of one class.

    Args:
        model: the classifier; computation follows its device and dtype.
        images: ``[I, C, S, S]`` preprocessed images of the class (D_c), square.
        class_index: the class's logit unit, the root of the circuit.
        layers: layer names, logit layer first (e.g. ``["fc", "layer4.2", "layer4.1"]``).
        config: hyper-parameters (default :class:`CircuitConfig`).
        model_name: stored in the artifact.
        class_name: stored in the artifact (default ``str(class_index)``).
        image_ids: one id per image (default ``"0"``, ``"1"``, ...).
        progress: optional progress-bar factory.
        resume: where to keep the hypertree's state after each transition, and to resume
            from (:class:`~neurflow.resume.TransitionStore`; its key should name the model,
            layers and settings; the build adds the images' fingerprint and the class).
            The caller clears it once the artifact is written.

    Returns:
        The :class:`Circuit`.

    Raises:
        ValueError: empty image set, mismatched ids, bad class index, unknown layers,
            non-square images or NaN activations.
    """
    config = config or CircuitConfig()
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty [I, C, S, S] tensor, got shape {tuple(images.shape)}")
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images must be square, got {images.shape[-2]}x{images.shape[-1]}")
    ids = tuple(str(i) for i in (image_ids if image_ids is not None else range(images.shape[0])))
    if len(ids) != images.shape[0]:
        raise ValueError(f"{len(ids)} image ids for {images.shape[0]} images")
    param = next(model.parameters(), None)
    if param is not None:
        images = to_device(images, param.device, param.dtype)  # through pinned memory to a GPU

    with _frozen(model), channels_last(model, config.channels_last) as nhwc:
        if nhwc:
            images = images.contiguous(memory_format=torch.channels_last)
        split = split_model(model, layers)
        grid = make_patch_grid(images.shape[0], images.shape[-1], config.scales, config.stride_ratio)
        maps: dict[str, torch.Tensor] = {}
        with stage(progress, "activations", len(grid)) as bar:
            acts = patch_activations(
                split,
                images,
                grid,
                batch_size=config.batch_size,
                progress=bar.update,  # type: ignore[arg-type]
                keep_maps=split.layers[1:],  # the lower layer of each transition, top first
                map_budget_bytes=config.map_cache_mb * 2**20,
                maps_out=maps,
                autocast=torch.bfloat16 if config.precision == "bfloat16" else None,
            )
        n_logits = acts[split.layers[0]].shape[1]
        if not 0 <= class_index < n_logits:
            raise ValueError(f"class index {class_index} is out of range for layer '{split.layers[0]}' with {n_logits} units")
        store = None
        if resume is not None:
            store = TransitionStore(resume.directory, f"{resume.key}|{data_fingerprint(images, ids)}|{int(class_index)}")
        targets_out, sgs, edges = _hypertree(split, images, grid, acts, maps, class_index, config, progress, store)
        groups, group_edges = _concept_circuit(split.layers, sgs, edges, acts, config)

    neuron_acts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for layer in split.layers:
        channels = np.array(sorted({sg.neuron.channel for sg in sgs if sg.neuron.layer == layer}), dtype=np.int64)
        neuron_acts[layer] = (channels, acts[layer][:, torch.as_tensor(channels)].numpy().astype(np.float32))
    return Circuit(
        model_name=model_name,
        model_fingerprint=model_fingerprint(model),
        class_index=int(class_index),
        class_name=class_name if class_name is not None else str(class_index),
        layers=split.layers,
        config=config,
        image_ids=ids,
        data_fingerprint=data_fingerprint(images, ids),
        patches=grid,
        targets=tuple(targets_out),
        semantic_groups=tuple(sgs),
        edges=tuple(edges),
        groups=tuple(groups),
        group_edges=tuple(group_edges),
        neuron_activations=neuron_acts,
        environment=environment(),
    )


def _semantic_groups(neuron: NeuronRef, concept: np.ndarray, values: np.ndarray, reps: np.ndarray, space: str, config: CircuitConfig) -> tuple[list[SemanticGroup], np.ndarray]:
    """Cluster a neuron's top-k patches into semantic groups (Section 3.4, Eq. 3).

    Args:
        concept: ``[k]`` patch ids of V_a, highest activation first.
        values: ``[k]`` activations of the neuron on those patches.
        reps: ``[k, m]`` Eq. 3 representative vectors of those patches.

    Returns:
        The groups and the ``[k]`` group label of each patch.
    """
    labels = ward_silhouette(reps, config.max_semantic_groups)
    out = []
    for j in range(int(labels.max()) + 1):
        rows = np.nonzero(labels == j)[0]
        ex = rows[closest_to_centre(reps[rows], config.n_exemplars)]
        out.append(
            SemanticGroup(
                neuron=neuron,
                index=j,
                patch_ids=tuple(int(concept[r]) for r in rows),
                activations=tuple(float(values[r]) for r in rows),
                exemplar_ids=tuple(int(concept[r]) for r in ex),
                space=space,
                vector=reps[rows].mean(0).astype(np.float32),
            )
        )
    return out, labels


def _hypertree(
    split: ModelSplit,
    images: torch.Tensor,
    grid: PatchGrid,
    acts: dict[str, torch.Tensor],
    maps: dict[str, torch.Tensor],
    class_index: int,
    config: CircuitConfig,
    progress: ProgressFactory | None,
    store: TransitionStore | None = None,
) -> tuple[list[CoreNeurons], list[SemanticGroup], list[HypertreeEdge]]:
    """Expand the hypertree layer by layer from the class logit down (Sections 3.3-3.4).

    With a ``store``, the state after each transition is saved, and a build resumes after
    the transitions a stored state (of the same inputs) already holds.
    """
    layers = split.layers
    targets = [class_index]
    results: list[CoreNeurons] = []
    sgs: list[SemanticGroup] = []
    edges: list[HypertreeEdge] = []
    state = store.load() if store is not None else None
    done = 0
    if state is not None and state.done < len(layers):
        done, targets = state.done, list(state.targets)
        results, sgs, edges = list(state.cores), list(state.semantic_groups), list(state.edges)
    for i, (upper, lower) in enumerate(zip(layers[:-1], layers[1:])):
        if i < done:
            maps.pop(lower, None)  # finished before: its kept feature maps are not needed
            continue
        upper_acts, lower_acts = acts[upper], acts[lower].double().numpy()
        concepts = [top_k(upper_acts[:, a], config.k) for a in targets]  # V_a per target
        union = np.unique(np.concatenate(concepts))  # [U]
        position = {int(p): i for i, p in enumerate(union)}
        membership = torch.zeros(len(targets), len(union), dtype=torch.bool)  # [T, U]
        for t, concept in enumerate(concepts):
            membership[t, [position[int(p)] for p in concept]] = True
        if lower in maps:  # kept by the activation pass; freed once used
            kept = maps.pop(lower)
            x = kept[torch.as_tensor(union, device=kept.device)].to(images.dtype)  # [U, C_lower, ...]
            del kept
        else:
            x = feature_maps(split, lower, images, grid, union, batch_size=config.batch_size)  # [U, C_lower, ...]
        with stage(progress, f"integrated gradients {upper} -> {lower}: {len(targets)} targets, {len(union)} patches", 1) as bar:
            _, pair_input, pair_attr = integrated_gradients_pairs(
                split.segment(upper),
                x,
                torch.tensor(targets),
                membership,
                steps=config.steps,
                method=config.method,
                max_batch=config.ig_batch,
                precision=config.ig_precision,
            )  # [M], [M, C_lower]: only the (target, patch) pairs used, by target then patch
            bar.update(1)
        pair_attr, pair_input = pair_attr.cpu(), pair_input.cpu().numpy()  # type: ignore[assignment]
        starts = np.concatenate([[0], np.cumsum(membership.sum(1).numpy())])  # [T + 1] each target's rows
        del x
        next_targets: set[int] = set()
        with stage(progress, f"clustering {upper}", len(targets)) as bar:
            for t, a in enumerate(targets):
                neuron = NeuronRef(upper, int(a))
                concept = concepts[t]
                mine = pair_input[starts[t] : starts[t + 1]]  # [k] union positions, ascending
                rows = starts[t] + np.searchsorted(mine, [position[int(p)] for p in concept])  # in V_a's order
                per_patch = pair_attr[torch.as_tensor(rows)].double().numpy()  # [k, C_lower], float64 only here
                signed = per_patch.sum(0)  # T(a, s, V_a), Eq. 2
                score = np.abs(signed) if config.aggregate == "eq2" else np.abs(per_patch).mean(0)
                core = np.argsort(-score, kind="stable")[: config.tau]
                results.append(
                    CoreNeurons(
                        target=neuron,
                        lower_layer=lower,
                        concept=tuple(int(p) for p in concept),
                        core=tuple(int(c) for c in core),
                        scores=tuple(float(score[c]) for c in core),
                        signed=tuple(float(signed[c]) for c in core),
                        all_scores=score.astype(np.float32),
                    )
                )
                values = upper_acts[torch.as_tensor(concept), a].double().numpy()
                groups, labels = _semantic_groups(neuron, concept, values, lower_acts[concept], lower, config)
                sgs.extend(groups)
                for sg in groups:
                    t_j = per_patch[labels == sg.index][:, core].sum(0)  # T(a, s, V_{a,j}) for s in core
                    norm = np.abs(t_j).sum()
                    for s, value in zip(core, t_j):
                        edges.append(
                            HypertreeEdge(
                                child=NeuronRef(lower, int(s)),
                                parent=neuron,
                                group=sg.index,
                                weight=float(value / norm) if norm > 0 else 0.0,  # Eq. 4
                                importance=float(value),
                            )
                        )
                next_targets.update(int(c) for c in core)
                bar.update(1)
        targets = sorted(next_targets)
        if store is not None:
            store.save(HypertreeState(i + 1, tuple(targets), tuple(results), tuple(sgs), tuple(edges)))
    # The lowest layer has no layer below: its neurons' concepts are clustered in their own
    # activation space.
    lowest = layers[-1]
    lowest_acts = acts[lowest].double().numpy()
    for a in targets:
        concept = top_k(acts[lowest][:, a], config.k)
        groups, _ = _semantic_groups(NeuronRef(lowest, int(a)), concept, lowest_acts[concept, a], lowest_acts[concept], lowest, config)
        sgs.extend(groups)
    return results, sgs, edges


def _concept_circuit(
    layers: Sequence[str],
    sgs: list[SemanticGroup],
    edges: list[HypertreeEdge],
    acts: dict[str, torch.Tensor],
    config: CircuitConfig,
) -> tuple[list[NeuronGroup], list[GroupEdge]]:
    """Neuron groups per layer and the weighted edges between them (Section 3.5)."""
    groups: list[NeuronGroup] = []
    for depth, layer in enumerate(layers):
        items = [sg for sg in sgs if sg.neuron.layer == layer]
        if not items:
            continue
        vectors = np.stack([sg.vector for sg in items]).astype(np.float64)
        # The root layer holds only the class logit: its semantic groups form one group.
        labels = np.zeros(len(items), dtype=np.int64) if depth == 0 else ward_silhouette(vectors, config.max_neuron_groups)
        space = items[0].space
        space_acts = acts[space].double().numpy()
        for g in range(int(labels.max()) + 1):
            members = [items[i] for i in np.nonzero(labels == g)[0]]
            patch_ids = np.array(sorted({p for sg in members for p in sg.patch_ids}), dtype=np.int64)
            centre = np.stack([sg.vector for sg in members]).astype(np.float64).mean(0)
            dist = np.linalg.norm(space_acts[patch_ids] - centre, axis=1)
            exemplars = patch_ids[np.argsort(dist, kind="stable")[: config.n_exemplars]]
            groups.append(
                NeuronGroup(
                    layer=layer,
                    index=g,
                    members=tuple(GroupMember(sg.neuron, sg.index) for sg in members),
                    patch_ids=tuple(int(p) for p in patch_ids),
                    exemplar_ids=tuple(int(p) for p in exemplars),
                    vector=centre.astype(np.float32),
                )
            )
    # W(G_i, G_j) = sum over members (s_p, V_{G_j,p}) of the parent and neurons s_q of the
    # child of w(s_p, s_q, V_{G_j,p}).
    weight = {(e.parent, e.group, e.child): e.weight for e in edges}
    group_edges: list[GroupEdge] = []
    for upper, lower in zip(layers[:-1], layers[1:]):
        for parent in (g for g in groups if g.layer == upper):
            for child in (g for g in groups if g.layer == lower):
                child_neurons = child.neurons
                total, count = 0.0, 0
                for m in parent.members:
                    for s in child_neurons:
                        w = weight.get((m.neuron, m.semantic_group, s))
                        if w is not None:
                            total += w
                            count += 1
                if count:
                    group_edges.append(GroupEdge(child.layer, child.index, parent.layer, parent.index, total, count))
    return groups, group_edges
