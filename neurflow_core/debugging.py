"""Image debugging (Section 5.1): which neuron groups make a class fire for the wrong reasons.

Two questions are kept apart, because they have different evidence:

1. **Does the group cause the class's false positives?** A statistical finding. The group's
   neurons are masked (zeroed at its layer) and we measure how far the false positives (FP:
   images of other classes predicted as the class) move away from the class: the mean drop
   of the class's logit margin over the FPs. The null distribution is the same figure for
   random neuron sets of the group's size from the same layer; the p-value is a sequential Monte-Carlo permutation p-value (Besag & Clifford,
   1991), and the false-discovery rate over every group of a family is controlled with
   Benjamini-Hochberg (:func:`assign_verdicts`). A class with fewer FPs than the evidence
   floor gets the verdict ``insufficient evidence`` and no group test.
2. **Is the group spurious for the class?** It causes false positives *and* its concept is
   not part of the class itself. That needs evidence about what the concept depicts (a
   label from pixel annotations or a multimodal LLM, :mod:`neurflow.ingest.labelling`):
   ``part_of_class`` per group. Without it the verdict says so ("spuriousness unknown").

The **bias score** ranks groups; it is not a test. It is the *specific* effect on false
positives, in [0, 1] (:func:`bias_score`): the share of the FPs that random sets leave
that masking the group removes, times one minus the share of the true positives (TP) that
random sets keep that masking the group destroys. A group that also destroys the class's
own true positives is the object, not a context.

Masking uses the model's own segments (:mod:`neurflow.intervention`): feature maps at a
group's layer are computed once, then the masked maps (many random sets at once, folded into
the batch) run through the segments above it, so each random draw costs only the top of the
network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy.stats import false_discovery_control
from torch import nn

from . import intervention
from .activations import patch_activations
from .circuit import Circuit, NeuronGroup
from .metrics import group_concept_metric
from .patches import crop_patches, make_patch_grid
from .segments import ModelSplit, split_model

__all__ = [
    "DebugConfig",
    "GroupEvidence",
    "ClassDebug",
    "Verdict",
    "bias_score",
    "permutation_draws",
    "assign_verdicts",
    "debug_circuit",
    "firing_masks",
]


class Verdict:
    """The verdict strings, in the JSON, the table and the graph (``verdict`` properties)."""

    SPURIOUS = "spurious"
    PART_OF_CLASS = "causes false positives; part of the class"
    UNKNOWN = "causes false positives; spuriousness unknown"
    NOT_SIGNIFICANT = "not significant"
    INSUFFICIENT = "insufficient evidence"
    # class level
    CLASS_BIASED = "biased"
    CLASS_CAUSES = "false positives explained; no spurious group"
    CLASS_UNKNOWN = "false positives explained; spuriousness unknown"
    CLASS_NONE = "no group explains the false positives"


@dataclass(frozen=True)
class DebugConfig:
    """Settings of the debugger, fixed before any figure is looked at.

    Attributes:
        alpha: the false-discovery rate controlled by Benjamini-Hochberg (q-value <= alpha
            means "causes false positives").
        min_fp: the evidence floor: a class with fewer false positives gets the verdict
            "insufficient evidence". With 10, one false positive moves the flip fraction by
            0.1, and a group that flips all of them has a binomial 95% interval of [0.69, 1].
        reference_draws: random sets of every group whose TP and FP effects give the
            random means (the bias score's reference); also the fewest permutation draws.
        max_draws: the most permutation draws per group (the test stops earlier, see
            ``min_exceed``; :func:`permutation_draws` sizes it for a family).
        min_exceed: Besag-Clifford's h: draws stop once h random sets flipped at least as
            many false positives as the group (the group is then clearly not significant).
        fdr_scope: ``"run"``: one Benjamini-Hochberg family over every group of every class
            debugged together (the graph's cross-class list of biased groups then has its
            FDR controlled); ``"class"``: one family per class.
        seed: seeds the random sets (per layer and group, so results do not depend on order).
        top_n: images and patches kept per group, by logit drop.
        batch_bytes: the most bytes of masked feature maps in one forward batch.
    """

    alpha: float = 0.05
    min_fp: int = 10
    reference_draws: int = 100
    max_draws: int = 20_000
    min_exceed: int = 10
    fdr_scope: str = "run"
    seed: int = 0
    top_n: int = 5
    batch_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.min_fp < 1:
            raise ValueError(f"min_fp must be >= 1, got {self.min_fp}")
        if self.reference_draws < 1 or self.max_draws < self.reference_draws:
            raise ValueError(f"need 1 <= reference_draws <= max_draws, got {self.reference_draws} and {self.max_draws}")
        if self.min_exceed < 1:
            raise ValueError(f"min_exceed must be >= 1, got {self.min_exceed}")
        if self.fdr_scope not in ("run", "class"):
            raise ValueError(f"fdr_scope must be 'run' or 'class', got {self.fdr_scope!r}")


@dataclass(frozen=True)
class GroupEvidence:
    """Bias evidence of one neuron group.

    Attributes:
        tp_metric / fp_metric / user_metric: mean group-concept metric M (Section 5) over
            TP, FP and user images, each image's M the maximum over its patches (None when
            the set is empty). Descriptive: M is not part of the test or the score.
        tp_prob_drop / tp_logit_drop: mean drop of the class probability / logit on TPs when
            the group is masked.
        fp_flip / tp_flip: fraction of FPs / TPs no longer predicted as the class when masked.
        random_*: mean and std of the same figures over the reference random sets.
        fp_margin_drop: the test statistic: the mean drop, over the FPs, of the class's logit
            margin (its logit minus the largest other logit) when the group is masked.
        effect_fp_flip: fp_flip minus the random mean; z_fp_flip its z-score (descriptive).
        p_fp_flip: the permutation p-value of ``fp_margin_drop`` (Besag-Clifford).
        draws: random sets drawn for the p-value.
        q_value: the Benjamini-Hochberg adjusted p-value in its family (None until
            :func:`assign_verdicts`).
        collateral_tp: the share of the TPs that random sets keep that masking the group
            destroys, ``clip((tp_flip - random) / (1 - random), 0, 1)``.
        bias_score: :func:`bias_score`.
        causes_fp: q_value <= alpha.
        part_of_class: the concept evidence: True (the concept is the class's own, or an
            object's), False (it is not: a context), None (unknown).
        object_share: the figure behind ``part_of_class`` when pixel annotations decided it:
            the share of object pixels where the group fires on the false positives it removes.
        verdict: one of :class:`Verdict`'s group strings.
        confusers: ``(true class index, FPs of that class flipped, FPs of that class)`` for
            the classes whose false positives masking the group removes ("hoverfly -> bee").
        shared_classes / shared_fraction: other classes whose circuits use the group's
            concepts (concept atlas; descriptive), or None.
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
    fp_flip: float
    tp_flip: float | None
    random_tp_prob_drop_mean: float
    random_tp_prob_drop_std: float
    random_fp_flip_mean: float
    random_fp_flip_std: float
    random_tp_flip_mean: float | None
    fp_margin_drop: float
    random_fp_margin_drop_mean: float
    effect_fp_flip: float
    z_fp_flip: float
    p_fp_flip: float
    draws: int
    z_tp_drop: float
    collateral_tp: float
    bias_score: float
    q_value: float | None = None
    causes_fp: bool = False
    part_of_class: bool | None = None
    object_share: float | None = None
    verdict: str = Verdict.NOT_SIGNIFICANT
    confusers: tuple[tuple[int, int, int], ...] = field(default=())
    shared_classes: int | None = None
    shared_fraction: float | None = None
    top_images: tuple[tuple[int, float], ...] = field(default=())
    top_patches: tuple[tuple[int, float], ...] = field(default=())


@dataclass(frozen=True)
class ClassDebug:
    """All groups' evidence for one class, ranked (see :func:`assign_verdicts`).

    Attributes:
        verdict: one of :class:`Verdict`'s class strings (``insufficient evidence`` when
            ``n_fp < config.min_fp``; then ``groups`` is empty).
        n_tests: size of the Benjamini-Hochberg family the q-values were computed in.
        image_ids: names of the scored images in TP, FP, user order (the order of
            ``GroupEvidence.top_images``) when the caller gave them.
        fp_classes: the true class of each false positive, in FP order.
    """

    class_index: int
    n_tp: int
    n_fp: int
    n_user: int
    groups: tuple[GroupEvidence, ...]
    config: DebugConfig = field(default_factory=DebugConfig)
    verdict: str = Verdict.CLASS_NONE
    n_tests: int = 0
    image_ids: tuple[str, ...] = ()
    fp_classes: tuple[int, ...] = ()


def bias_score(fp_flip: float, random_fp_flip: float, tp_flip: float | None, random_tp_flip: float | None) -> float:
    """The specific effect of masking a group on the false positives, in [0, 1].

    ``score = e * (1 - d)`` with

    * ``e = clip((fp_flip - r_fp) / (1 - r_fp), 0, 1)``: of the false positives that masking
      random neuron sets of the group's size leaves, the share that masking the group
      removes (1: every one; 0: no more than random sets);
    * ``d = clip((tp_flip - r_tp) / (1 - r_tp), 0, 1)``: the collateral damage, the same
      share for the class's own true positives. A group whose masking destroys the true
      positives is the class's object, not a context it leans on.

    The score ranks groups; whether a group causes the false positives at all is the
    permutation test's and the false-discovery control's decision, not the score's.
    """
    e = 0.0 if random_fp_flip >= 1.0 else float(np.clip((fp_flip - random_fp_flip) / (1.0 - random_fp_flip), 0.0, 1.0))
    return e * (1.0 - _collateral(tp_flip, random_tp_flip))


def _collateral(tp_flip: float | None, random_tp_flip: float | None) -> float:
    if tp_flip is None or random_tp_flip is None or random_tp_flip >= 1.0:
        return 0.0
    return float(np.clip((tp_flip - random_tp_flip) / (1.0 - random_tp_flip), 0.0, 1.0))


def permutation_draws(n_tests: int, config: DebugConfig) -> int:
    """Permutation draws per group for a family of ``n_tests`` groups.

    A lone discovery among m tests needs ``p <= alpha / m``; with B draws and no random set
    as strong, the p-value is ``1 / (B + 1)``. We draw ``ceil(2 m / alpha)`` (a factor two of
    margin for the Monte-Carlo error), at least the reference draws, at most
    ``config.max_draws``.
    """
    return int(min(config.max_draws, max(config.reference_draws, math.ceil(2 * max(n_tests, 1) / config.alpha))))


# The masked forward of the debugger is neurflow.intervention's; these names stay for callers
# that import them from here (neurflow.ingest.debugging).
_suffix = intervention.suffix
_masked_logits = intervention.masked_logits
_drop_mask = intervention.drop_mask
_random_masks = intervention.random_masks
_layer_maps = intervention.layer_maps


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


def _stats(values: np.ndarray) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _margin(logits: torch.Tensor, c: int) -> torch.Tensor:
    """The class's logit margin: logit c minus the largest other logit. ``[..., K] -> [...]``."""
    others = logits.clone()
    others[..., c] = float("-inf")
    return logits[..., c] - others.max(-1).values


@dataclass(frozen=True)
class _Null:
    """What the random sets of one group gave."""

    fp_flip: np.ndarray  # [reference_draws] fraction of FPs flipped
    fp_margin_drop: np.ndarray  # [reference_draws] the test statistic
    tp_flip: np.ndarray  # [reference_draws] fraction of TPs flipped (empty without TPs)
    tp_prob_drop: np.ndarray  # [reference_draws]
    p_value: float
    draws: int


@torch.no_grad()
def _null(suffix, feats: torch.Tensor, n_tp: int, n_fp: int, c: int, observed: float, base_prob: torch.Tensor,
          base_margin: torch.Tensor, rng: np.random.Generator, size: int, max_draws: int, config: DebugConfig) -> _Null:
    """Random sets of ``size`` channels: reference figures, then the sequential permutation test.

    The statistic is the mean drop of the class's logit margin over the false positives
    (``base_margin``: ``[n_fp]`` unmasked). A count of flipped false positives would tie at
    its ceiling when false positives sit near the decision boundary and random sets flip them
    all. Draws go in order; the test stops at the ``min_exceed``-th draw at least as strong as
    ``observed`` (p = h / l, Besag & Clifford) or after ``max_draws`` draws
    (p = (1 + exceedances) / (1 + draws)).
    """
    width, device = feats.shape[1], feats.device
    tp_feats, fp_feats = feats[:n_tp], feats[n_tp : n_tp + n_fp]
    ref = _random_masks(rng, width, size, config.reference_draws, device)  # [R, C]
    logits = _masked_logits(suffix, torch.cat([tp_feats, fp_feats]), ref, config.batch_bytes)  # [R, n_tp + n_fp, K]
    wrong = logits.argmax(2) != c  # [R, n_tp + n_fp]
    fp_flip = wrong[:, n_tp:].double().mean(1).cpu().numpy()  # [R]
    stat = (base_margin.unsqueeze(0) - _margin(logits[:, n_tp:], c)).double().mean(1).cpu().numpy()  # [R]
    tp_flip = wrong[:, :n_tp].double().mean(1).cpu().numpy() if n_tp else np.zeros(0)
    tp_prob_drop = (base_prob[:n_tp].unsqueeze(0) - logits[:, :n_tp].softmax(2)[..., c]).double().mean(1).cpu().numpy() if n_tp else np.zeros(config.reference_draws)
    at_least = observed - 1e-9 * max(1.0, abs(observed))  # the group's own set, recomputed in a batch, counts as a tie
    stats = [stat]
    drawn, exceed = len(stat), int((stat >= at_least).sum())
    per_batch = max(1, config.batch_bytes // max(fp_feats[:1].numel() * fp_feats.element_size() * max(n_fp, 1), 1))
    while exceed < config.min_exceed and drawn < max_draws:
        more = _random_masks(rng, width, size, min(per_batch, max_draws - drawn), device)
        batch = (base_margin.unsqueeze(0) - _margin(_masked_logits(suffix, fp_feats, more, config.batch_bytes), c)).double().mean(1).cpu().numpy()
        stats.append(batch)
        drawn += len(batch)
        exceed += int((batch >= at_least).sum())
    every = np.concatenate(stats)
    hits = np.flatnonzero(every >= at_least)
    if len(hits) >= config.min_exceed:
        p = config.min_exceed / (hits[config.min_exceed - 1] + 1)  # stopped at the h-th exceedance
        drawn = int(hits[config.min_exceed - 1] + 1)
    else:
        p = (1 + len(hits)) / (1 + len(every))
        drawn = len(every)
    return _Null(fp_flip, stat, tp_flip, tp_prob_drop, float(min(p, 1.0)), drawn)


@torch.no_grad()
def firing_masks(split: ModelSplit, layer: str, channels: Sequence[int], patch_images: torch.Tensor, *, level: float = 0.5, batch: int = 64) -> np.ndarray:
    """Where a group's neurons fire inside each patch (NetDissect's idea, for a group).

    Each neuron's spatial map at ``layer`` is divided by its largest value over the patches,
    the group's map is the mean over its neurons, upsampled (bilinear) to the patch's pixels,
    and a pixel is in the mask when the map there is at least ``level`` times the patch's
    maximum. Pixel annotations counted inside the mask say what the neurons respond to,
    not what else the patch's box holds (a small object in a large patch is mostly
    background by pixel count).

    Args:
        patch_images: ``[P, C, S, S]`` patches as the model sees them (``crop_patches``).

    Returns:
        ``[P, S, S]`` bool; all True for a layer without spatial axes, all False for a patch
        where the group is silent.
    """
    size = patch_images.shape[-1]
    if len(patch_images) == 0:
        return np.zeros((0, size, size), dtype=bool)
    ex = split.extractor([layer])
    idx = torch.as_tensor(list(channels), dtype=torch.long, device=patch_images.device)
    maps = torch.cat([ex(patch_images[i : i + batch])[layer].index_select(1, idx) for i in range(0, len(patch_images), batch)]).float()  # [P, k, *spatial]
    if maps.dim() == 2:
        return np.ones((len(patch_images), size, size), dtype=bool)
    maps = maps.clamp_min(0)
    peak = maps.amax(dim=(0, 2, 3), keepdim=True)  # [1, k, 1, 1] each neuron's largest value
    group = (maps / torch.where(peak > 0, peak, torch.ones_like(peak))).mean(1, keepdim=True)  # [P, 1, h, w]
    group = torch.nn.functional.interpolate(group, size=(size, size), mode="bilinear", align_corners=False)[:, 0]  # [P, S, S]
    top = group.amax(dim=(1, 2), keepdim=True)  # [P, 1, 1]
    return ((group >= level * top) & (top > 0)).cpu().numpy()


@torch.no_grad()
def debug_circuit(
    model: nn.Module,
    circuit: Circuit,
    tp_images: torch.Tensor,
    fp_images: torch.Tensor,
    user_images: torch.Tensor | None = None,
    *,
    fp_classes: Sequence[int] | None = None,
    class_images: torch.Tensor | None = None,
    config: DebugConfig | None = None,
    n_tests: int | None = None,
    part_of_class: Mapping[tuple[str, int], bool | None] | None = None,
    shared_fraction: Mapping[tuple[str, int], float] | None = None,
    shared_classes: Mapping[tuple[str, int], int] | None = None,
    layers: Sequence[str] | None = None,
    image_ids: Sequence[str] | None = None,
) -> ClassDebug:
    """Test every neuron group of ``circuit`` for causing false positives (Section 5.1).

    The returned groups have p-values but no q-values yet: pass every class debugged
    together to :func:`assign_verdicts`, which controls the false-discovery rate and ranks.

    Args:
        model: the classifier the circuit was built from (eval mode, on its device).
        circuit: the class's circuit.
        tp_images: ``[n_tp, C, S, S]`` images of the class predicted as the class.
        fp_images: ``[n_fp, C, S, S]`` images of other classes predicted as the class.
        user_images: optional extra images to score with M.
        fp_classes: the true class of each false positive (for ``confusers``).
        class_images: the images the circuit was built from (D_c), to rank patches of the
            patch dataset by logit drop; skipped when None.
        config: :class:`DebugConfig` (default settings when None).
        n_tests: the size of the Benjamini-Hochberg family this class's groups will be
            tested in (sizes the permutation draws, :func:`permutation_draws`); default: this
            class's groups.
        part_of_class: per (layer, group index): whether the group's concept is the class's
            own (concept labels); missing or None = unknown.
        shared_fraction / shared_classes: per (layer, group index), from the concept atlas.
        layers: restrict to these layers (default: every layer below the logit).
        image_ids: names of the TP, FP and user images in that order, kept in the result.

    Returns:
        A :class:`ClassDebug`; ``verdict`` is ``insufficient evidence`` and no group is
        tested when there are fewer than ``config.min_fp`` false positives.
    """
    config = config or DebugConfig()
    device = next(model.parameters()).device
    model.eval()
    c = circuit.class_index
    user_images = user_images if user_images is not None else tp_images[:0]
    n_tp, n_fp, n_user = len(tp_images), len(fp_images), len(user_images)
    if image_ids is not None and len(image_ids) != n_tp + n_fp + n_user:
        raise ValueError(f"{len(image_ids)} image ids for {n_tp + n_fp + n_user} images")
    if fp_classes is not None and len(fp_classes) != n_fp:
        raise ValueError(f"{len(fp_classes)} false-positive classes for {n_fp} false positives")
    ids = tuple(str(i) for i in image_ids) if image_ids is not None else ()
    fp_cls = tuple(int(x) for x in fp_classes) if fp_classes is not None else ()
    if n_fp < config.min_fp:
        return ClassDebug(c, n_tp, n_fp, n_user, (), config, Verdict.INSUFFICIENT, 0, ids, fp_cls)
    chosen = list(layers if layers is not None else circuit.layers[1:])
    if n_tests is None:
        n_tests = sum(len(circuit.groups_of(layer)) for layer in chosen)
    max_draws = permutation_draws(n_tests, config)
    split = split_model(model, circuit.layers)
    all_images = torch.cat([tp_images, fp_images, user_images]).to(device)
    base_logits = model(all_images)  # [n, K]
    base_prob = base_logits.softmax(1)[:, c]  # [n]
    base_margin_fp = _margin(base_logits[n_tp : n_tp + n_fp], c)  # [n_fp]
    patch_ids = None
    if class_images is not None:
        patch_ids = np.array(sorted({p for g in circuit.groups for p in g.patch_ids}), dtype=np.int64)
        patch_imgs = crop_patches(class_images.to(device), circuit.patches.subset(patch_ids))
        base_patch = model(patch_imgs)[:, c]
    grid = make_patch_grid(len(all_images), all_images.shape[-1], circuit.config.scales, circuit.config.stride_ratio)
    patch_acts = patch_activations(split, all_images, grid, chosen)  # one pass: M of every group
    fp_true = np.asarray(fp_cls, dtype=np.int64) if fp_cls else None
    evidence = []
    for layer_pos, layer in enumerate(chosen):
        groups = circuit.groups_of(layer)
        if not groups:
            continue
        suffix = _suffix(split, layer)
        feats = _layer_maps(split, layer, all_images)  # [n, C, *spatial]
        width = feats.shape[1]
        patch_feats = _layer_maps(split, layer, patch_imgs) if patch_ids is not None else None
        for g in groups:
            channels = [n.channel for n in g.neurons]
            logits = _masked_logits(suffix, feats, _drop_mask(width, channels, device), config.batch_bytes)[0]  # [n, K]
            wrong = (logits.argmax(1) != c).cpu().numpy()  # [n]
            fp_wrong = wrong[n_tp : n_tp + n_fp]
            rng = np.random.default_rng([config.seed, layer_pos, g.index])
            margin_drop = float((base_margin_fp - _margin(logits[n_tp : n_tp + n_fp], c)).double().mean())
            null = _null(suffix, feats, n_tp, n_fp, c, margin_drop, base_prob, base_margin_fp, rng, len(channels), max_draws, config)
            fp_flip = float(fp_wrong.mean())
            tp_flip = float(wrong[:n_tp].mean()) if n_tp else None
            rf_mean, rf_std = _stats(null.fp_flip)
            rt_mean = float(null.tp_flip.mean()) if n_tp else None
            rp_mean, rp_std = _stats(null.tp_prob_drop)
            tp_prob = float((base_prob[:n_tp] - logits[:n_tp].softmax(1)[:, c]).mean()) if n_tp else 0.0
            tp_logit = float((base_logits[:n_tp, c] - logits[:n_tp, c]).mean()) if n_tp else 0.0
            drops = (base_logits[:, c] - logits[:, c]).double().cpu().numpy()
            order = np.argsort(-drops, kind="stable")[: config.top_n]
            top_patches: tuple[tuple[int, float], ...] = ()
            if patch_feats is not None:
                masked = _masked_logits(suffix, patch_feats, _drop_mask(width, channels, device), config.batch_bytes)[0]
                pdrop = (base_patch - masked[:, c]).double().cpu().numpy()
                porder = np.argsort(-pdrop, kind="stable")[: config.top_n]
                top_patches = tuple((int(patch_ids[i]), float(pdrop[i])) for i in porder)  # type: ignore[index]  # set with patch_feats
            confusers: tuple[tuple[int, int, int], ...] = ()
            if fp_true is not None:
                confusers = tuple(
                    (int(k), int(fp_wrong[fp_true == k].sum()), int((fp_true == k).sum()))
                    for k in np.unique(fp_true) if fp_wrong[fp_true == k].any()
                )
            metric = _image_metric(circuit, g, patch_acts[layer], grid.image_index, len(all_images))
            key = (layer, g.index)
            floor = 1.0 / n_fp  # one image: the resolution of the flip fraction
            evidence.append(
                GroupEvidence(
                    layer=layer,
                    index=g.index,
                    channels=tuple(channels),
                    tp_metric=float(metric[:n_tp].mean()) if n_tp else None,
                    fp_metric=float(metric[n_tp : n_tp + n_fp].mean()),
                    user_metric=float(metric[n_tp + n_fp :].mean()) if n_user else None,
                    tp_prob_drop=tp_prob,
                    tp_logit_drop=tp_logit,
                    fp_flip=fp_flip,
                    tp_flip=tp_flip,
                    random_tp_prob_drop_mean=rp_mean,
                    random_tp_prob_drop_std=rp_std,
                    random_fp_flip_mean=rf_mean,
                    random_fp_flip_std=rf_std,
                    random_tp_flip_mean=rt_mean,
                    fp_margin_drop=margin_drop,
                    random_fp_margin_drop_mean=float(null.fp_margin_drop.mean()),
                    effect_fp_flip=fp_flip - rf_mean,
                    z_fp_flip=(fp_flip - rf_mean) / max(rf_std, floor),
                    p_fp_flip=null.p_value,
                    draws=null.draws,
                    z_tp_drop=(tp_prob - rp_mean) / max(rp_std, 1e-6),
                    collateral_tp=_collateral(tp_flip, rt_mean),
                    bias_score=bias_score(fp_flip, rf_mean, tp_flip, rt_mean),
                    part_of_class=(part_of_class or {}).get(key),
                    confusers=confusers,
                    shared_classes=shared_classes.get(key) if shared_classes else None,
                    shared_fraction=shared_fraction.get(key) if shared_fraction else None,
                    top_images=tuple((int(i), float(drops[i])) for i in order),
                    top_patches=top_patches,
                )
            )
    return ClassDebug(c, n_tp, n_fp, n_user, tuple(evidence), config, Verdict.CLASS_NONE, n_tests, ids, fp_cls)


def _group_verdict(causes: bool, part: bool | None) -> str:
    if not causes:
        return Verdict.NOT_SIGNIFICANT
    return {False: Verdict.SPURIOUS, True: Verdict.PART_OF_CLASS}.get(part, Verdict.UNKNOWN)  # type: ignore[arg-type]


def _class_verdict(groups: Sequence[GroupEvidence]) -> str:
    verdicts = {g.verdict for g in groups}
    if Verdict.SPURIOUS in verdicts:
        return Verdict.CLASS_BIASED
    if Verdict.UNKNOWN in verdicts:
        return Verdict.CLASS_UNKNOWN
    if Verdict.PART_OF_CLASS in verdicts:
        return Verdict.CLASS_CAUSES
    return Verdict.CLASS_NONE


def assign_verdicts(results: Sequence[ClassDebug]) -> list[ClassDebug]:
    """Control the false-discovery rate, give every group and class its verdict, and rank.

    Benjamini-Hochberg (``scipy.stats.false_discovery_control``) runs over every tested
    group of ``results`` (``fdr_scope="run"``) or over each class's groups (``"class"``).
    A group *causes false positives* when its q-value is at most ``alpha``; it is
    *spurious* when it also has ``part_of_class`` False. Within a class, groups that cause
    false positives come first, each part ordered by bias score (highest first), then
    p-value. Classes with insufficient evidence pass through unchanged.
    """
    if not results:
        return []
    config = results[0].config
    if any(r.config.alpha != config.alpha or r.config.fdr_scope != config.fdr_scope for r in results):
        raise ValueError("classes debugged together must share alpha and fdr_scope")
    families = [[r] for r in results] if config.fdr_scope == "class" else [list(results)]
    q_of: dict[tuple[int, str, int], float] = {}
    size_of: dict[int, int] = {}
    for family in families:
        keys = [(r.class_index, g.layer, g.index) for r in family for g in r.groups]
        ps = np.array([g.p_fp_flip for r in family for g in r.groups], dtype=np.float64)
        qs = false_discovery_control(ps, method="bh") if len(ps) else ps
        q_of.update(zip(keys, (float(q) for q in qs)))
        for r in family:
            size_of[r.class_index] = len(ps)
    out = []
    for r in results:
        if r.verdict == Verdict.INSUFFICIENT:
            out.append(r)
            continue
        groups = []
        for g in r.groups:
            q = q_of[(r.class_index, g.layer, g.index)]
            causes = q <= r.config.alpha
            groups.append(replace(g, q_value=q, causes_fp=causes, verdict=_group_verdict(causes, g.part_of_class)))
        groups.sort(key=lambda g: (not g.causes_fp, -g.bias_score, g.p_fp_flip, g.layer, g.index))
        out.append(replace(r, groups=tuple(groups), verdict=_class_verdict(groups), n_tests=size_of[r.class_index]))
    return out
