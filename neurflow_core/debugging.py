"""Image debugging (Section 5.1): which neuron groups make a class fire for the wrong reasons.

For every neuron group G of a class's concept circuit:

* **activity**: the group-concept metric M (Section 5) of each image, the maximum over the
  image's patches (as the authors' ``debug_img``), averaged over the class's true positives
  (TP) and false positives (FP, images of other classes predicted as the class);
* **causality**: G's neurons are masked (zeroed at G's layer) and we measure the drop of the
  class's probability and logit on TPs and the fraction of FPs that stop being predicted as
  the class; the same for ``draws`` random neuron sets of G's size from the same layer,
  giving an effect size and a z-score;
* **top images**: the images (and patches of the patch dataset) whose class logit drops most
  when G is masked (Figure 9);
* **bias score** (documented in :func:`bias_score`).

Masking uses the model's own segments: feature maps at G's layer are computed once, then the
masked maps run through the segments above it, so each random draw costs only the top of the
network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .circuit import Circuit, NeuronGroup
from .activations import patch_activations
from .metrics import group_concept_metric
from .patches import crop_patches, make_patch_grid
from .segments import ModelSplit, split_model

__all__ = ["GroupEvidence", "ClassDebug", "bias_score", "debug_circuit", "BIAS_THRESHOLD"]

BIAS_THRESHOLD = 0.25


@dataclass(frozen=True)
class GroupEvidence:
    """Bias evidence of one neuron group.

    Attributes:
        tp_metric / fp_metric / user_metric: mean group-concept metric M over TP, FP and
            user images (None when the set is empty).
        tp_prob_drop / tp_logit_drop: mean drop of the class probability / logit on TPs when
            the group is masked.
        fp_flip: fraction of FPs no longer predicted as the class when masked.
        tp_flip: fraction of TPs no longer predicted as the class when masked (a group
            the class cannot do without on its own images; not part of the score).
        random_*: mean and std of the same figures over random sets of the group's size.
        effect_fp_flip: fp_flip minus the random mean; z_fp_flip its z-score.
        p_fp_flip: empirical p-value of fp_flip against the random draws,
            ``(1 + #{draws flipping at least as many}) / (1 + draws)``.
        z_tp_drop: z-score of tp_prob_drop against the random draws.
        shared_classes: other classes whose circuits use any of the group's concepts (atlas),
            or None.
        shared_fraction: the sharing that enters the score (see :func:`bias_score`), or None.
        bias_score: see :func:`bias_score`.
        top_images: ``(image index into tp+fp+user order, logit drop)``, largest drop first.
        top_patches: ``(patch id of the class's patch dataset, logit drop)``.
    """

    layer: str
    index: int
    channels: tuple[int, ...]
    tp_metric: float | None
    fp_metric: float | None
    user_metric: float | None
    tp_prob_drop: float
    tp_logit_drop: float
    fp_flip: float | None
    tp_flip: float | None
    random_tp_prob_drop_mean: float
    random_tp_prob_drop_std: float
    random_fp_flip_mean: float | None
    random_fp_flip_std: float | None
    effect_fp_flip: float | None
    z_fp_flip: float | None
    p_fp_flip: float | None
    z_tp_drop: float
    shared_classes: int | None
    shared_fraction: float | None
    bias_score: float
    top_images: tuple[tuple[int, float], ...] = field(default=())
    top_patches: tuple[tuple[int, float], ...] = field(default=())


@dataclass(frozen=True)
class ClassDebug:
    """All groups' evidence for one class, ranked by bias score (highest first).

    ``image_ids`` names the scored images in TP, FP, user order (the order of
    ``GroupEvidence.top_images``) when the caller gave them.
    """

    class_index: int
    n_tp: int
    n_fp: int
    n_user: int
    groups: tuple[GroupEvidence, ...]
    threshold: float = BIAS_THRESHOLD
    image_ids: tuple[str, ...] = ()


def bias_score(
    tp_metric: float | None,
    fp_metric: float | None,
    z_fp_flip: float | None,
    shared_fraction: float | None,
    *,
    p_fp_flip: float | None = None,
    z_ref: float = 3.0,
    alpha: float = 0.05,
) -> float:
    """Combine the evidence into one bias score in [0, 1].

    A group biases the class when three things hold, and the score is their product:

    * **active on false positives**: ``a = clip(M_fp / M_tp, 0, 1)``, how much of its
      activity on the class's own images (true positives) the group keeps on the false
      positives. The class's object parts are silent on images without the object (a near
      0); a spurious context fires on the false positives as it does on the true
      positives, which usually show the same context (a near 1). Requiring M_fp to
      *exceed* M_tp would miss exactly the biases worth finding: when the class is nearly
      always photographed with the context, the context is on the true positives too;
    * **causal beyond random**: ``c = clip(z_fp_flip / z_ref, 0, 1)``: masking the group
      removes more false positives than masking random neuron sets of its size, measured
      in random-draw standard deviations (z_ref = 3 gives full weight); and c = 0 unless
      the empirical p-value ``p_fp_flip`` (when given) is at most ``alpha``: flip fractions
      over a few false positives are discrete and bounded, so a z-score alone overstates
      the evidence when random sets also flip them all;
    * **not specific to the class**: ``s = 0.5 + 0.5 * shared_fraction``, where
      shared_fraction is, averaged over the group's members, the fraction of other classes
      whose circuits use the member's concept (concept atlas); without an atlas s = 0.75.
      Shared concepts are contexts rather than the class's own parts, so sharing raises
      the score but cannot make it.

    Without false positives there is nothing to explain and the score is 0.
    """
    if fp_metric is None or tp_metric is None or z_fp_flip is None:
        return 0.0
    a = float(np.clip(fp_metric / tp_metric, 0.0, 1.0)) if tp_metric > 0 else 0.0
    c = float(np.clip(z_fp_flip / z_ref, 0.0, 1.0))
    if p_fp_flip is not None and p_fp_flip > alpha:
        c = 0.0
    s = 0.75 if shared_fraction is None else 0.5 + 0.5 * float(np.clip(shared_fraction, 0.0, 1.0))
    return a * c * s


def _suffix(split: ModelSplit, layer: str):
    """A function from ``layer``'s output to the logits, chaining the segments above it."""
    chain = [split.segment(up) for up in reversed(split.layers[: split.layers.index(layer)])]

    def run(x: torch.Tensor) -> torch.Tensor:
        for seg in chain:
            x = seg(x)
        return x

    return run


@torch.no_grad()
def _masked_logits(suffix, feats: torch.Tensor, channels: Sequence[int], batch: int = 256) -> torch.Tensor:
    mask = torch.ones(feats.shape[1], dtype=feats.dtype, device=feats.device)
    mask[torch.as_tensor(list(channels), dtype=torch.long, device=feats.device)] = 0
    shape = (1, -1, *([1] * (feats.dim() - 2)))
    return torch.cat([suffix(feats[i : i + batch] * mask.view(shape)) for i in range(0, len(feats), batch)])


@torch.no_grad()
def _layer_maps(split: ModelSplit, layer: str, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
    ex = split.extractor([layer])
    return torch.cat([ex(images[i : i + batch])[layer] for i in range(0, len(images), batch)]) if len(images) else images.new_zeros(0)


def _image_metric(circuit: Circuit, group: NeuronGroup, patch_acts: torch.Tensor, image_index: np.ndarray, n_images: int) -> np.ndarray:
    """M per image: the maximum over the image's patches (scales of the circuit's config).

    Args:
        patch_acts: ``[P, C]`` spatial-mean activations of every patch at the group's layer.
        image_index: ``[P]`` the image of each patch.
    """
    if n_images == 0:
        return np.zeros(0)
    channels = [n.channel for n in group.neurons]
    max_d = np.array([circuit.activation(n).max() for n in group.neurons])
    scores = group_concept_metric(patch_acts[:, channels].double().numpy(), max_d)
    per_image = np.full(n_images, -np.inf)
    np.maximum.at(per_image, image_index, scores)
    return per_image


def _stats(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


@torch.no_grad()
def debug_circuit(
    model: nn.Module,
    circuit: Circuit,
    tp_images: torch.Tensor,
    fp_images: torch.Tensor,
    user_images: torch.Tensor | None = None,
    *,
    class_images: torch.Tensor | None = None,
    draws: int = 20,
    seed: int = 0,
    top_n: int = 5,
    shared_fraction: dict[tuple[str, int], float] | None = None,
    shared_classes: dict[tuple[str, int], int] | None = None,
    layers: Sequence[str] | None = None,
    image_ids: Sequence[str] | None = None,
) -> ClassDebug:
    """Score every neuron group of ``circuit`` for bias (Section 5.1).

    Args:
        model: the classifier the circuit was built from (eval mode, on its device).
        circuit: the class's circuit.
        tp_images: ``[n_tp, C, S, S]`` images of the class predicted as the class.
        fp_images: ``[n_fp, C, S, S]`` images of other classes predicted as the class.
        user_images: optional extra images to score with M.
        class_images: the images the circuit was built from (D_c), to rank patches of the
            patch dataset by logit drop; skipped when None.
        draws: random neuron sets per group; at least 19 for the empirical p-value to be able
            to reach 0.05 (the bias score's significance gate), 20 by default.
        seed: for the random sets.
        top_n: images and patches kept per group.
        shared_fraction / shared_classes: per (layer, group index), from the concept atlas.
        layers: restrict to these layers (default: every layer below the logit).
        image_ids: names of the TP, FP and user images in that order, kept in the result.

    Returns:
        A :class:`ClassDebug` with groups ranked by bias score.
    """
    if draws < 1:
        raise ValueError("draws must be >= 1")
    device = next(model.parameters()).device
    model.eval()
    split = split_model(model, circuit.layers)
    c = circuit.class_index
    user_images = user_images if user_images is not None else tp_images[:0]
    all_images = torch.cat([tp_images, fp_images, user_images]).to(device)
    n_tp, n_fp, n_user = len(tp_images), len(fp_images), len(user_images)
    if image_ids is not None and len(image_ids) != n_tp + n_fp + n_user:
        raise ValueError(f"{len(image_ids)} image ids for {n_tp + n_fp + n_user} images")
    rng = np.random.default_rng(seed)
    base_logits = model(all_images) if len(all_images) else None
    patch_ids = None
    if class_images is not None:
        patch_ids = np.array(sorted({p for g in circuit.groups for p in g.patch_ids}), dtype=np.int64)
        patch_imgs = crop_patches(class_images.to(device), circuit.patches.subset(patch_ids))
        base_patch = model(patch_imgs)[:, c]
    evidence = []
    chosen = list(layers if layers is not None else circuit.layers[1:])
    # one streaming pass: every layer's activations on every patch of every image (for M)
    grid = make_patch_grid(max(len(all_images), 1), all_images.shape[-1], circuit.config.scales, circuit.config.stride_ratio)
    patch_acts = patch_activations(split, all_images, grid, chosen) if len(all_images) else {}
    for layer in chosen:
        groups = circuit.groups_of(layer)
        if not groups:
            continue
        suffix = _suffix(split, layer)
        feats = _layer_maps(split, layer, all_images)
        width = feats.shape[1]
        patch_feats = _layer_maps(split, layer, patch_imgs) if patch_ids is not None else None
        for g in groups:
            channels = [n.channel for n in g.neurons]
            metric = _image_metric(circuit, g, patch_acts[layer], grid.image_index, len(all_images)) if len(all_images) else np.zeros(0)

            def effects(chs: Sequence[int]) -> tuple[float, float, float | None, torch.Tensor]:
                logits = _masked_logits(suffix, feats, chs)
                prob = logits.softmax(1)[:, c]
                base_prob = base_logits.softmax(1)[:, c]
                tp_prob = float((base_prob[:n_tp] - prob[:n_tp]).mean()) if n_tp else 0.0
                tp_logit = float((base_logits[:n_tp, c] - logits[:n_tp, c]).mean()) if n_tp else 0.0
                flip = float((logits[n_tp : n_tp + n_fp].argmax(1) != c).float().mean()) if n_fp else None
                return tp_prob, tp_logit, flip, logits

            tp_prob, tp_logit, flip, logits = effects(channels)
            tp_flip = float((logits[:n_tp].argmax(1) != c).float().mean()) if n_tp else None
            rand_prob, rand_flip = [], []
            for _ in range(draws):
                r = rng.choice(width, size=len(channels), replace=False)
                p, _, f, _ = effects(r.tolist())
                rand_prob.append(p)
                if f is not None:
                    rand_flip.append(f)
            rp_mean, rp_std = _stats(rand_prob)
            rf_mean, rf_std = _stats(rand_flip) if rand_flip else (None, None)
            z_tp = (tp_prob - rp_mean) / max(rp_std, 1e-6)
            if flip is not None:
                floor = 1.0 / max(n_fp, 1)  # one image: the resolution of the flip fraction
                z_flip = (flip - rf_mean) / max(rf_std, floor)
                effect = flip - rf_mean
                p_flip = (1 + sum(r >= flip for r in rand_flip)) / (1 + len(rand_flip))
            else:
                z_flip = effect = p_flip = None
            drops = (base_logits[:, c] - logits[:, c]).double().cpu().numpy() if len(all_images) else np.zeros(0)
            order = np.argsort(-drops, kind="stable")[:top_n]
            top_patches: tuple[tuple[int, float], ...] = ()
            if patch_feats is not None:
                pdrop = (base_patch - _masked_logits(suffix, patch_feats, channels)[:, c]).double().cpu().numpy()
                porder = np.argsort(-pdrop, kind="stable")[:top_n]
                top_patches = tuple((int(patch_ids[i]), float(pdrop[i])) for i in porder)
            key = (layer, g.index)
            frac = shared_fraction.get(key) if shared_fraction else None
            tp_m = float(metric[:n_tp].mean()) if n_tp else None
            fp_m = float(metric[n_tp : n_tp + n_fp].mean()) if n_fp else None
            evidence.append(
                GroupEvidence(
                    layer=layer,
                    index=g.index,
                    channels=tuple(channels),
                    tp_metric=tp_m,
                    fp_metric=fp_m,
                    user_metric=float(metric[n_tp + n_fp :].mean()) if n_user else None,
                    tp_prob_drop=tp_prob,
                    tp_logit_drop=tp_logit,
                    fp_flip=flip,
                    tp_flip=tp_flip,
                    random_tp_prob_drop_mean=rp_mean,
                    random_tp_prob_drop_std=rp_std,
                    random_fp_flip_mean=rf_mean,
                    random_fp_flip_std=rf_std,
                    effect_fp_flip=effect,
                    z_fp_flip=z_flip,
                    p_fp_flip=p_flip,
                    z_tp_drop=z_tp,
                    shared_classes=shared_classes.get(key) if shared_classes else None,
                    shared_fraction=frac,
                    bias_score=bias_score(tp_m, fp_m, z_flip, frac, p_fp_flip=p_flip),
                    top_images=tuple((int(i), float(drops[i])) for i in order),
                    top_patches=top_patches,
                )
            )
    evidence.sort(key=lambda e: (-e.bias_score, e.layer, e.index))
    return ClassDebug(c, n_tp, n_fp, n_user, tuple(evidence), image_ids=tuple(str(i) for i in image_ids) if image_ids is not None else ())
