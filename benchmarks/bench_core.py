"""Benchmark the NeurFlow core against the authors' way of computing the same circuit.

Workload (defaults = the full configuration): one class (index 0) of torchvision
``resnet50`` (``weights=None``, fixed seed, eval mode), transitions
``fc -> layer4.2 -> layer4.1``, tau=16, k=50, N=50 integration steps, aggregate
``abs-mean`` (the authors' ranking), and 20 seeded procedural 224x224 images giving
20 * 59 = 1180 patches (scales 1 / 0.5 / 0.25, stride 0.5). Every image is used (no
classification filter).

Four runs, each in its own subprocess so that its peak RSS is its own:

* ``baseline``: the authors' released algorithm (``NeurFlow.py`` of tue147/neurflow),
  re-implemented here: per layer transition the prefix (netA, an ``nn.Sequential`` cut of
  the model) recomputes the *full* feature maps of *all* patches at the lower layer and the
  segment (netB) runs over all of them; then for every target neuron separately its top-k
  patches go through ``captum.attr.IntegratedGradients(netB wrapped to the spatial
  mean).attribute(..., baselines=0, target=neuron, n_steps=N)`` in batches of
  ``--baseline-ig-batch`` patches (8, the default of the release's ``run.py``), the per-patch
  channel scores are ranked by mean |score| and the top tau kept; the semantic clustering
  of each target (Ward + silhouette over 2..5 clusters) is done as in the release; the
  next layer's targets are the union of core neurons.
* ``ours``: ``neurflow.build_circuit`` with the same quadrature and N (identical settings).
* ``gl16``: ``neurflow.build_circuit`` with a cheaper quadrature (gausslegendre, 16 steps).
* ``cheap``: the same, with the activation pass (top-k ranking) in bfloat16 autocast
  (``--cheap-precision``); integrated gradients stay float32.

Ours runs with ``CircuitConfig`` defaults for the speed-only settings: channels_last memory
layout (``--contiguous`` turns it off) and lower-layer feature maps kept from the activation
pass (``--map-cache-mb``, 0 recomputes them).

Reported: wall times, speed ratios, peak RSS (and its growth over the process's
resident set after set-up), the stage breakdown of each run, Jaccard agreement of the
core neuron sets (per target and pooled), the FLOPs of the integrated-gradients work and
the achieved GFLOP/s next to the machine's float32 matmul throughput.

Usage::

    python benchmarks/bench_core.py                          # full size (slow on a laptop CPU)
    python benchmarks/bench_core.py --images 4 --k 10 --tau 4 --steps 8 --json /tmp/small.json
    python benchmarks/bench_core.py --device cuda             # same workload on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- set-up


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=20, help="number of synthetic images (59 patches each)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--tau", type=int, default=16, help="core neurons kept per target")
    p.add_argument("--k", type=int, default=50, help="top-k patches per neuron")
    p.add_argument("--steps", type=int, default=50, help="integration steps N (both ours and the baseline)")
    p.add_argument("--method", default="riemann_right", help="IG quadrature for the identical-settings comparison (riemann_right = Eq. 2)")
    p.add_argument("--cheap-method", default="gausslegendre", help="quadrature of the cheaper run of ours")
    p.add_argument("--cheap-steps", type=int, default=16, help="steps of the cheaper run of ours")
    p.add_argument(
        "--cheap-precision", default="bfloat16", choices=["float32", "bfloat16"],
        help="activation-pass precision of the 'cheap' run (the 'gl16' run is the same quadrature in float32)",
    )
    p.add_argument("--contiguous", action="store_true", help="ours: CircuitConfig(channels_last=False), for an ablation")
    p.add_argument("--map-cache-mb", type=int, default=1024, help="ours: CircuitConfig.map_cache_mb (0 recomputes feature maps)")
    p.add_argument("--class-index", type=int, default=0)
    p.add_argument("--layers", nargs="+", default=["fc", "layer4.2", "layer4.1"], help="logit layer first")
    p.add_argument("--seed", type=int, default=0, help="seed of the model weights and of the images")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--batch-size", type=int, default=64, help="ours: patches per activation forward (CircuitConfig.batch_size)")
    p.add_argument("--ig-batch", type=int, default=512, help="ours: interpolated inputs per IG forward (CircuitConfig.ig_batch)")
    p.add_argument("--baseline-batch-size", type=int, default=128, help="baseline: patches per netA/netB forward (release default 128)")
    p.add_argument("--baseline-ig-batch", type=int, default=8, help="baseline: patches per captum call (release run.py default 8)")
    p.add_argument("--runs", default="baseline,ours,gl16,cheap", help="comma-separated subset of baseline,ours,gl16,cheap")
    p.add_argument(
        "--mallopt",
        action="store_true",
        help="run every measured process with glibc MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ raised (no page-fault storm from "
        "big activation buffers being mmapped and unmapped per batch); off by default: the default measures what users get",
    )
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--min-jaccard", type=float, default=0.95, help="required pooled Jaccard at identical settings")
    # internal: one run inside a subprocess
    p.add_argument("--worker", choices=["baseline", "ours", "gl16", "cheap"], help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    for r in args.runs:
        if r not in ("baseline", "ours", "gl16", "cheap"):
            p.error(f"unknown run '{r}'")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda was asked for but CUDA is not available")
    return args


def make_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Seeded procedural images: smooth colour fields, discs, bars and stripes, plus noise.

    Normalised with the ImageNet mean/std like a preprocessed photo. ``[n, 3, size, size]``.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    out = []
    for _ in range(n):
        img = F.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=(size, size), mode="bicubic", align_corners=False)[0]
        # oriented stripes (a texture)
        theta = float(torch.rand(1, generator=g)) * math.pi
        freq = 0.05 + 0.25 * float(torch.rand(1, generator=g))
        stripes = 0.5 + 0.5 * torch.sin(freq * (xx * math.cos(theta) + yy * math.sin(theta)))
        img = img * (0.6 + 0.4 * stripes)
        for _ in range(int(torch.randint(3, 8, (1,), generator=g))):
            color = torch.rand(3, 1, 1, generator=g)
            cx, cy = (float(v) for v in torch.rand(2, generator=g) * size)
            r = size * (0.04 + 0.2 * float(torch.rand(1, generator=g)))
            if float(torch.rand(1, generator=g)) < 0.5:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
            else:
                mask = ((xx - cx).abs() < r) & ((yy - cy).abs() < r * 0.3)
            img = torch.where(mask, color.expand_as(img), img)
        img = (img + 0.04 * torch.randn(img.shape, generator=g)).clamp(0, 1)
        out.append(img)
    x = torch.stack(out)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def make_model(seed: int) -> nn.Module:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet50(weights=None).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def usage() -> dict[str, float]:
    """CPU seconds (all threads), minor page faults and the 1-minute load average, now."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"user_s": r.ru_utime, "sys_s": r.ru_stime, "minflt": float(r.ru_minflt), "load1": os.getloadavg()[0]}


def usage_delta(start: dict[str, float]) -> dict[str, float]:
    end = usage()
    return {
        "cpu_s": end["user_s"] + end["sys_s"] - start["user_s"] - start["sys_s"],
        "sys_s": end["sys_s"] - start["sys_s"],
        "minflt": end["minflt"] - start["minflt"],
        "load1_start": start["load1"],
        "load1_end": end["load1"],
    }


def current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def stable_top_k(values: torch.Tensor, k: int) -> np.ndarray:
    """Largest first, ties to the lower index (so that both runs pick the same V_a)."""
    v = values.detach().cpu().double().numpy()
    return np.argsort(-v, kind="stable")[: min(k, v.shape[0])].astype(np.int64)


class StageTimer:
    """A ``progress`` factory for ``build_circuit`` that records when each stage opens and closes."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.t0 = time.perf_counter()
        self.stages: list[dict[str, Any]] = []

    def __call__(self, name: str, total: int) -> StageTimer._Bar:
        sync(self.device)
        return StageTimer._Bar(self, name, total)

    class _Bar:
        def __init__(self, owner: StageTimer, name: str, total: int) -> None:
            self.owner, self.name, self.total, self.done = owner, name, total, 0
            self.start = time.perf_counter() - owner.t0

        def update(self, n: int = 1) -> None:
            self.done += n

        def close(self) -> None:
            sync(self.owner.device)
            end = time.perf_counter() - self.owner.t0
            self.owner.stages.append({"stage": self.name, "start": self.start, "end": end, "seconds": end - self.start})


# ----------------------------------------------------------------------------- workers


def _setup(args: argparse.Namespace) -> tuple[nn.Module, torch.Tensor, torch.device]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = make_model(args.seed).to(device)
    images = make_images(args.images, args.image_size, args.seed + 1)
    return model, images, device


def worker_ours(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    import neurflow

    model, images, device = _setup(args)
    method, steps = (args.method, args.steps) if kind == "ours" else (args.cheap_method, args.cheap_steps)
    precision = args.cheap_precision if kind == "cheap" else "float32"
    config = neurflow.CircuitConfig(
        tau=args.tau, k=args.k, steps=steps, method=method, aggregate="abs-mean", batch_size=args.batch_size, ig_batch=args.ig_batch,
        map_cache_mb=args.map_cache_mb, channels_last=not args.contiguous, precision=precision,
    )
    images = images.to(device)
    mm = matmul_gflops(device, repeats=5)
    rss_setup = current_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timer = StageTimer(device)
    sync(device)
    u0 = usage()
    t0 = time.perf_counter()
    timer.t0 = t0
    circuit = neurflow.build_circuit(model, images, args.class_index, args.layers, config, model_name="resnet50", progress=timer)
    sync(device)
    wall = time.perf_counter() - t0
    used = usage_delta(u0)

    # Attribute the gaps between reported stages (work build_circuit does not report).
    stages = []
    prev_end, prev_name = 0.0, None
    for st in timer.stages:
        gap = st["start"] - prev_end
        if gap > 0.005 or (gap > 0 and st["stage"].startswith("integrated gradients")):
            if prev_name is None:
                label = "setup (fx trace, grid)"
            elif st["stage"].startswith("integrated gradients"):
                label = "feature maps + top-k for " + st["stage"].removeprefix("integrated gradients ")
            else:
                label = f"(unreported before {st['stage']})"
            stages.append({"stage": label, "seconds": gap})
        stages.append({"stage": st["stage"], "seconds": st["seconds"]})
        prev_end, prev_name = st["end"], st["stage"]
    stages.append({"stage": "lowest-layer clustering + concept circuit + assembly", "seconds": wall - prev_end})

    cores, concepts, scores = {}, {}, {}
    for c in circuit.targets:
        key = c.target.key
        cores[key] = list(c.core)
        concepts[key] = list(c.concept)
        scores[key] = [float(v) for v in c.all_scores]
    return {
        "run": kind,
        "method": method,
        "steps": steps,
        "precision": precision,
        "channels_last": not args.contiguous,
        "map_cache_mb": args.map_cache_mb,
        "wall_s": wall,
        **used,
        "matmul_gflops_at_start": mm,
        "stages": stages,
        "rss_setup_mib": rss_setup,
        "peak_rss_mib": rss_mib(),
        "cuda_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "cores": cores,
        "concepts": concepts,
        "scores": scores,
        "lower": {c.target.key: c.lower_layer for c in circuit.targets},
    }


def resnet_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model as a flat list of blocks in forward order, as the release's ``split_model``
    cuts it: top-level children, ``nn.Sequential`` stages expanded into their blocks
    (``layer4.2``), and an ``nn.Flatten`` before ``fc`` (the release's conditional module)."""
    blocks: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            blocks.extend((f"{name}.{sub}", m) for sub, m in child.named_children())
        else:
            if name == "fc":
                blocks.append(("flatten", nn.Flatten()))
            blocks.append((name, child))
    return blocks


class SpatialMean(nn.Module):
    """The release's ``Model_wrapper``: a neuron's value is the spatial mean of its channel."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out.flatten(2).mean(-1) if out.dim() > 2 else out


def _silhouette_clusters(vectors: np.ndarray, max_clusters: int = 5) -> np.ndarray:
    """Ward clustering with the silhouette-best count in 2..max (as the release does)."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    upper = min(vectors.shape[0] - 1, max_clusters)
    best, best_score = None, -np.inf
    for n in range(2, max(upper, 2) + 1):
        labels = AgglomerativeClustering(n_clusters=n, linkage="ward").fit(vectors).labels_
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette_score(vectors, labels)
        if score > best_score:
            best, best_score = labels, score
    return best if best is not None else np.zeros(vectors.shape[0], dtype=np.int64)


@torch.no_grad()
def _batched(net: nn.Module, data: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """The release's ``batch_inference``: batches to the device, results back on the CPU."""
    return torch.cat([net(data[i : i + batch].to(device)).cpu() for i in range(0, len(data), batch)])


def worker_baseline(args: argparse.Namespace) -> dict[str, Any]:
    from captum.attr import IntegratedGradients

    from neurflow import crop_patches, make_patch_grid

    model, images, device = _setup(args)
    blocks = resnet_blocks(model)
    names = [n for n, _ in blocks]
    for layer in args.layers:
        if layer not in names:
            raise SystemExit(f"baseline: layer '{layer}' is not a block of this model ({', '.join(names)})")
    mm = matmul_gflops(device, repeats=5)
    rss_setup = current_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stages: list[dict[str, Any]] = []

    def stage(name: str, t: float) -> float:
        sync(device)
        now = time.perf_counter()
        stages.append({"stage": name, "seconds": now - t})
        return now

    sync(device)
    u0 = usage()
    t0 = t = time.perf_counter()
    # The release materialises the whole patch dataset once (Framework.concept_data); the
    # same grid and crops as ours so that patch ids agree.
    grid = make_patch_grid(images.shape[0], images.shape[-1], (1.0, 0.5, 0.25), 0.5)
    data = crop_patches(images, grid)  # [P, 3, S, S] on the CPU
    t = stage("crop all patches", t)

    cores: dict[str, list[int]] = {}
    concepts: dict[str, list[int]] = {}
    scores: dict[str, list[float]] = {}
    lower_of: dict[str, str] = {}
    targets = [args.class_index]
    for upper, lower in zip(args.layers[:-1], args.layers[1:]):
        i_low, i_up = names.index(lower), names.index(upper)
        net_a = nn.Sequential(*[m for _, m in blocks[: i_low + 1]]).eval()
        net_b = SpatialMean(nn.Sequential(*[m for _, m in blocks[i_low + 1 : i_up + 1]])).eval()
        prev = _batched(net_a, data, args.baseline_batch_size, device)  # [P, C, H, W] full maps of ALL patches
        t = stage(f"netA (prefix to {lower}) on all patches", t)
        acts = _batched(net_b, prev, args.baseline_batch_size, device)  # [P, C_upper]
        t = stage(f"netB ({lower} -> {upper}) on all patches", t)
        ig = IntegratedGradients(net_b)
        ig_time = cl_time = 0.0
        next_targets: set[int] = set()
        for a in targets:
            ti = time.perf_counter()
            top = stable_top_k(acts[:, a], args.k)
            x_all = prev[torch.as_tensor(top)]
            per_patch = []
            for s in range(0, len(x_all), args.baseline_ig_batch):
                x = x_all[s : s + args.baseline_ig_batch].to(device)
                x.requires_grad = True
                attr = ig.attribute(x, baselines=x * 0, target=int(a), n_steps=args.steps, method=args.method)
                attr = attr.detach()
                per_patch.append((attr.flatten(2).mean(-1) if attr.dim() > 2 else attr).cpu())
            list_scores = torch.cat(per_patch)  # [k, C_lower]
            score = list_scores.abs().mean(0).double().numpy()
            core = np.argsort(-score, kind="stable")[: args.tau]
            sync(device)
            tc = time.perf_counter()
            ig_time += tc - ti
            vecs = prev[torch.as_tensor(top)]
            vecs = (vecs.flatten(2).mean(-1) if vecs.dim() > 2 else vecs).double().numpy()
            _silhouette_clusters(vecs, 5)
            cl_time += time.perf_counter() - tc
            key = f"{upper}:{int(a)}"
            # The release ranks by the spatial *mean* of x*grad; ours by the spatial sum
            # (Eq. 2). Same ranking; rescale so that the scores are comparable.
            hw = int(np.prod(prev.shape[2:])) if prev.dim() > 2 else 1
            cores[key], concepts[key], scores[key] = [int(c) for c in core], [int(p) for p in top], [float(v * hw) for v in score]
            lower_of[key] = lower
            next_targets.update(int(c) for c in core)
        stages.append({"stage": f"integrated gradients {upper} -> {lower} (captum, per target)", "seconds": ig_time})
        stages.append({"stage": f"clustering {upper}", "seconds": cl_time})
        t = time.perf_counter()
        del prev, acts
        targets = sorted(next_targets)
    sync(device)
    wall = time.perf_counter() - t0
    used = usage_delta(u0)
    return {
        "run": "baseline",
        "method": args.method,
        "steps": args.steps,
        "wall_s": wall,
        **used,
        "matmul_gflops_at_start": mm,
        "stages": stages,
        "rss_setup_mib": rss_setup,
        "peak_rss_mib": rss_mib(),
        "cuda_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "cores": cores,
        "concepts": concepts,
        "scores": scores,
        "lower": lower_of,
    }


# ----------------------------------------------------------------------------- FLOPs, matmul


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def count_flops(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """FLOPs per sample of each segment (forward; forward + input-gradient backward) and of
    the prefix to each layer, counted with ``torch.utils.flop_counter.FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    import neurflow

    model = make_model(args.seed).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    split = neurflow.split_model(model, args.layers)
    img = make_images(1, args.image_size, args.seed + 1).to(device)
    out: dict[str, Any] = {"segments": {}, "prefix": {}}
    for layer in args.layers:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            split.extractor([layer])(img)
        out["prefix"][layer] = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        split.extractor()(img)
    out["prefix"]["all"] = fc.get_total_flops()
    for upper, lower in zip(args.layers[:-1], args.layers[1:]):
        with torch.no_grad():
            x0 = split.extractor([lower])(img)[lower]
        seg = split.segment(upper)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            seg(x0)
        fwd = fc.get_total_flops()
        x = x0.clone().requires_grad_(True)
        with FlopCounterMode(display=False) as fc:
            y = neurflow.neuron_activations(seg(x))[:, 0].sum()
            y.backward()  # parameters are frozen: only the input gradient is computed
        out["segments"][upper] = {"lower": lower, "forward": fwd, "forward_backward": fc.get_total_flops()}
    return out


def ours_ig_rows(concepts: dict[str, list[int]], steps: int, ig_batch: int) -> tuple[int, int, int]:
    """(unique patches U, (target, patch) pairs, backward rows executed) of one transition of
    ``neurflow.integrated_gradients``: forward over U * N interpolations; per chunk (cut by the
    library's own planner, at most ``ig_batch // N`` patches) as many dense backward rounds as
    the most-shared patch of the chunk has targets."""
    from neurflow.attribution import _plan_chunks

    users: dict[int, int] = {}
    for c in concepts.values():
        for p in c:
            users[p] = users.get(p, 0) + 1
    patches = sorted(users)
    per_input = [list(range(users[p])) for p in patches]
    order = sorted(range(len(patches)), key=lambda q: (-len(per_input[q]), q))
    back = sum(len(per_input[chunk[0]]) * len(chunk) for chunk in _plan_chunks(order, per_input, max(1, ig_batch // steps)))
    return len(users), sum(users.values()), back


# ----------------------------------------------------------------------------- comparison


def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def compare(ref: dict[str, Any], other: dict[str, Any], layers: Sequence[str]) -> dict[str, Any]:
    per_target = {key: jaccard(ref["cores"][key], other["cores"][key]) for key in ref["cores"] if key in other["cores"]}
    pairs_a = {(k, c) for k, v in ref["cores"].items() for c in v}
    pairs_b = {(k, c) for k, v in other["cores"].items() for c in v}
    pooled = len(pairs_a & pairs_b) / len(pairs_a | pairs_b) if pairs_a | pairs_b else 1.0
    per_layer = {}
    for upper in layers[:-1]:
        ua = {c for k, v in ref["cores"].items() if k.startswith(upper + ":") for c in v}
        ub = {c for k, v in other["cores"].items() if k.startswith(upper + ":") for c in v}
        per_layer[upper] = jaccard(sorted(ua), sorted(ub))
    concept_j = [jaccard(ref["concepts"][k], other["concepts"][k]) for k in per_target]
    rel = []
    for key in per_target:
        a = np.asarray(ref["scores"][key])
        b = np.asarray(other["scores"][key])
        rel.append(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30)))
    return {
        "per_target": per_target,
        "per_target_min": min(per_target.values()) if per_target else float("nan"),
        "per_target_mean": float(np.mean(list(per_target.values()))) if per_target else float("nan"),
        "pooled": pooled,
        "per_layer_union": per_layer,
        "targets_only_in_ref": sorted(set(ref["cores"]) - set(other["cores"])),
        "targets_only_in_other": sorted(set(other["cores"]) - set(ref["cores"])),
        "concept_jaccard_min": min(concept_j) if concept_j else float("nan"),
        "score_max_rel_diff": max(rel) if rel else float("nan"),
    }


# ----------------------------------------------------------------------------- driver


def run_worker_subprocess(kind: str, argv: list[str], mallopt: bool = False) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(prefix=f"bench_core_{kind}_", suffix=".json", delete=False) as fh:
        path = fh.name
    try:
        cmd = [sys.executable, os.path.abspath(__file__), *argv, "--worker", kind, "--worker-out", path]
        print(f"[bench] starting {kind} run ...", flush=True)
        env = dict(os.environ)
        if mallopt:
            env["MALLOC_MMAP_THRESHOLD_"] = str(2**34)
            env["MALLOC_TRIM_THRESHOLD_"] = str(2**34)
        proc = subprocess.run(cmd, env=env, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{kind} run failed with exit status {proc.returncode}")
        with open(path) as fh:
            return json.load(fh)
    finally:
        os.unlink(path)


def forwarded_argv(args: argparse.Namespace) -> list[str]:
    out = [
        "--images", str(args.images), "--image-size", str(args.image_size), "--tau", str(args.tau), "--k", str(args.k),
        "--steps", str(args.steps), "--method", args.method, "--cheap-method", args.cheap_method,
        "--cheap-steps", str(args.cheap_steps), "--cheap-precision", args.cheap_precision,
        "--map-cache-mb", str(args.map_cache_mb), "--class-index", str(args.class_index), "--seed", str(args.seed),
        "--device", args.device, "--batch-size", str(args.batch_size), "--ig-batch", str(args.ig_batch),
        "--baseline-batch-size", str(args.baseline_batch_size), "--baseline-ig-batch", str(args.baseline_ig_batch),
        "--layers", *args.layers,
    ]
    if args.threads:
        out += ["--threads", str(args.threads)]
    if args.contiguous:
        out.append("--contiguous")
    return out


def _ig_seconds(result: dict[str, Any], upper: str) -> float:
    return sum(s["seconds"] for s in result["stages"] if s["stage"].startswith(f"integrated gradients {upper} ->"))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = worker_baseline(args) if args.worker == "baseline" else worker_ours(args, args.worker)
        with open(args.worker_out, "w") as fh:
            json.dump(result, fh)
        print(f"[bench] {args.worker}: {result['wall_s']:.1f} s, peak RSS {result['peak_rss_mib']:.0f} MiB", flush=True)
        return 0

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    from neurflow import make_patch_grid

    n_patches = len(make_patch_grid(args.images, args.image_size, (1.0, 0.5, 0.25), 0.5))
    mm = matmul_gflops(device)
    print(f"[bench] matmul 2048x2048 float32: {mm:.1f} GFLOP/s", flush=True)
    flops = count_flops(args, device)

    fwd_argv = forwarded_argv(args)
    results: dict[str, dict[str, Any]] = {}
    for kind in ("baseline", "ours", "gl16", "cheap"):
        if kind in args.runs:
            results[kind] = run_worker_subprocess(kind, fwd_argv, args.mallopt)

    # ---- FLOPs of the IG work
    ig_rows: dict[str, Any] = {}
    for kind, res in results.items():
        steps = res["steps"]
        rows = {}
        total_nominal = total_exec = 0.0
        for upper, lower in zip(args.layers[:-1], args.layers[1:]):
            seg = flops["segments"][upper]
            conc = {k: v for k, v in res["concepts"].items() if k.startswith(upper + ":")}
            u, pairs, back = ours_ig_rows(conc, steps, args.ig_batch)
            nominal = seg["forward_backward"] * pairs * steps  # one fwd+bwd per (target, patch, step)
            if kind == "baseline":
                executed = nominal
            else:
                executed = seg["forward"] * u * steps + (seg["forward_backward"] - seg["forward"]) * back * steps
            secs = _ig_seconds(res, upper)
            rows[upper] = {
                "lower": lower, "targets": len(conc), "unique_patches": u, "pairs": pairs, "backward_rows": back if kind != "baseline" else pairs,
                "evaluations": pairs * steps, "nominal_flops": nominal, "executed_flops": executed, "seconds": secs,
                "nominal_gflops_per_s": nominal / secs / 1e9 if secs > 0 else float("nan"),
                "executed_gflops_per_s": executed / secs / 1e9 if secs > 0 else float("nan"),
            }
            total_nominal += nominal
            total_exec += executed
        secs = sum(r["seconds"] for r in rows.values())
        ig_rows[kind] = {
            "transitions": rows, "nominal_flops": total_nominal, "executed_flops": total_exec, "seconds": secs,
            "nominal_gflops_per_s": total_nominal / secs / 1e9 if secs > 0 else float("nan"),
            "executed_gflops_per_s": total_exec / secs / 1e9 if secs > 0 else float("nan"),
        }

    comparisons = {}
    if "baseline" in results and "ours" in results:
        comparisons["ours_vs_baseline"] = compare(results["baseline"], results["ours"], args.layers)
    for kind in ("gl16", "cheap"):
        if "ours" in results and kind in results:
            comparisons[f"{kind}_vs_ours"] = compare(results["ours"], results[kind], args.layers)
        if "baseline" in results and kind in results:
            comparisons[f"{kind}_vs_baseline"] = compare(results["baseline"], results[kind], args.layers)

    # ---- report
    base_wall = results["baseline"]["wall_s"] if "baseline" in results else None
    label = {
        "baseline": f"baseline (authors' way, captum {args.method} N={args.steps})",
        "ours": f"ours build_circuit ({args.method} N={args.steps})",
        "gl16": f"ours build_circuit ({args.cheap_method} N={args.cheap_steps})",
        "cheap": f"ours build_circuit ({args.cheap_method} N={args.cheap_steps}, {args.cheap_precision} act. pass)",
    }
    lines = []
    w = lines.append
    w("")
    w("NeurFlow core benchmark")
    w(
        f"  resnet50 (weights=None, seed {args.seed}, eval), class {args.class_index}, layers {' -> '.join(args.layers)}, "
        f"{args.images} images x 59 = {n_patches} patches, tau {args.tau}, k {args.k}, aggregate abs-mean"
    )
    w(
        f"  device {args.device}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}"
    )
    w("")
    w(
        f"{'run':<52} {'wall s':>8} {'speed-up':>8} {'CPU s':>8} {'CPU ratio':>9} {'sys s':>7} {'peak RSS MiB':>12} {'RSS growth':>10} "
        f"{'load1':>11} {'matmul GF/s':>11}" + ("  CUDA peak MiB" if device.type == "cuda" else "")
    )
    base_cpu = results["baseline"]["cpu_s"] if "baseline" in results else None
    for kind, res in results.items():
        ratio = f"{base_wall / res['wall_s']:.2f}x" if base_wall else "-"
        cratio = f"{base_cpu / res['cpu_s']:.2f}x" if base_cpu else "-"
        growth = res["peak_rss_mib"] - res["rss_setup_mib"]
        load = f"{res['load1_start']:.1f}->{res['load1_end']:.1f}"
        extra = f"  {res['cuda_peak_mib']:.0f}" if res.get("cuda_peak_mib") is not None else ""
        w(
            f"{label[kind]:<52} {res['wall_s']:>8.1f} {ratio:>8} {res['cpu_s']:>8.1f} {cratio:>9} {res['sys_s']:>7.1f} {res['peak_rss_mib']:>12.0f} "
            f"{growth:>10.0f} {load:>11} {res['matmul_gflops_at_start']:>11.1f}{extra}"
        )
    w("  speed-up = baseline wall / run wall; CPU s = user+sys seconds of all threads of the run (less sensitive to other load")
    w("  on the machine); RSS growth = peak RSS - RSS after model/images set-up; each run in its own process; load1 = 1-minute")
    w("  load average at start -> end; matmul GF/s = 2048^2 float32 matmul measured in that process just before the run")
    for kind, res in results.items():
        w("")
        w(f"stages of {label[kind]}:")
        for st in res["stages"]:
            share = 100 * st["seconds"] / res["wall_s"] if res["wall_s"] else 0
            w(f"  {st['stage']:<66} {st['seconds']:>9.2f} s {share:>5.1f}%")
    for name, cmp in comparisons.items():
        w("")
        w(f"core-set agreement {name.replace('_', ' ')}:")
        w(
            f"  per-target Jaccard: min {cmp['per_target_min']:.3f}, mean {cmp['per_target_mean']:.3f} over {len(cmp['per_target'])} common targets; "
            f"pooled (target, core) Jaccard {cmp['pooled']:.3f}"
        )
        w("  union of core neurons per transition: " + ", ".join(f"{u}: {j:.3f}" for u, j in cmp["per_layer_union"].items()))
        w(
            f"  targets only in the reference: {len(cmp['targets_only_in_ref'])}, only in the other: {len(cmp['targets_only_in_other'])}; "
            f"min concept (top-k) Jaccard {cmp['concept_jaccard_min']:.3f}; max relative score difference {cmp['score_max_rel_diff']:.2e}"
        )
        if name == "ours_vs_baseline":
            ok = cmp["pooled"] >= args.min_jaccard and cmp["per_target_min"] >= args.min_jaccard
            w(f"  identical-settings agreement >= {args.min_jaccard}: {'PASS' if ok else 'FAIL'}")
    w("")
    w("where the time goes (IG = integrated gradients; FLOPs from FlopCounterMode, one sample, times the evaluations):")
    for upper, seg in flops["segments"].items():
        w(
            f"  segment {seg['lower']} -> {upper}: forward {seg['forward'] / 1e6:.1f} MFLOP, forward+input-backward "
            f"{seg['forward_backward'] / 1e6:.1f} MFLOP per sample"
        )
    w(
        "  prefix forward per patch: " + ", ".join(f"to {k} {v / 1e9:.2f} GFLOP" for k, v in flops["prefix"].items() if k != "all")
        + f"; all layers in one pass {flops['prefix']['all'] / 1e9:.2f} GFLOP"
    )
    for kind, ig in ig_rows.items():
        w(f"  {label[kind]}:")
        for upper, r in ig["transitions"].items():
            w(
                f"    IG {upper} -> {r['lower']}: {r['targets']} targets, {r['pairs']} (target, patch) pairs over {r['unique_patches']} patches, "
                f"{r['evaluations']} (target, patch, step) evaluations, backward rows {r['backward_rows']}"
            )
            w(
                f"      nominal {r['nominal_flops'] / 1e12:.3f} TFLOP, executed {r['executed_flops'] / 1e12:.3f} TFLOP in {r['seconds']:.2f} s "
                f"-> {r['nominal_gflops_per_s']:.1f} GFLOP/s nominal, {r['executed_gflops_per_s']:.1f} GFLOP/s executed"
            )
        w(
            f"    IG total: nominal {ig['nominal_flops'] / 1e12:.3f} TFLOP, executed {ig['executed_flops'] / 1e12:.3f} TFLOP in {ig['seconds']:.2f} s -> "
            f"{ig['nominal_gflops_per_s']:.1f} GFLOP/s nominal, {ig['executed_gflops_per_s']:.1f} GFLOP/s executed"
        )
        res = results[kind]
        if kind == "baseline":
            prefix_flops = sum(flops["prefix"][lo] for lo in args.layers[1:]) * n_patches
            prefix_s = sum(s["seconds"] for s in res["stages"] if s["stage"].startswith("netA"))
            w(f"    netA passes: {prefix_flops / 1e12:.3f} TFLOP in {prefix_s:.2f} s -> {prefix_flops / prefix_s / 1e9:.1f} GFLOP/s")
        else:
            act_s = sum(s["seconds"] for s in res["stages"] if s["stage"] == "activations")
            act_flops = flops["prefix"]["all"] * n_patches
            w(f"    activation pass: {act_flops / 1e12:.3f} TFLOP in {act_s:.2f} s -> {act_flops / act_s / 1e9:.1f} GFLOP/s")
    w(f"  machine: float32 matmul 2048x2048 {mm:.1f} GFLOP/s")
    w("  (nominal = fwd+bwd per (target, patch, step) as the baseline does it; executed = ours' shared forward over unique patches")
    w("   plus one dense backward per round of each chunk)")
    if base_wall:
        w("")
        w("targets:")
        for kind, goal, what in (
            ("ours", 2, f"identical settings ({args.method} N={args.steps})"),
            ("gl16", 5, f"cheaper quadrature ({args.cheap_method} N={args.cheap_steps})"),
            ("cheap", 5, f"cheaper quadrature ({args.cheap_method} N={args.cheap_steps}) + {args.cheap_precision} activation pass"),
        ):
            if kind in results:
                r = base_wall / results[kind]["wall_s"]
                c = base_cpu / results[kind]["cpu_s"]
                w(f"  {what}: wall {r:.2f}x, CPU time {c:.2f}x vs {goal}x target -> wall {'MET' if r >= goal else 'NOT MET'}, CPU {'MET' if c >= goal else 'NOT MET'}")
    text = "\n".join(lines)
    print(text, flush=True)

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        payload = {
            "config": {k: v for k, v in vars(args).items() if k not in ("worker", "worker_out", "json")},
            "patches": n_patches,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "matmul_gflops": mm,
            "flops": flops,
            "ig": ig_rows,
            "runs": {
                k: {kk: vv for kk, vv in v.items() if kk not in ("scores",)} for k, v in results.items()
            },
            "speedup_vs_baseline": {k: base_wall / v["wall_s"] for k, v in results.items()} if base_wall else {},
            "cpu_ratio_vs_baseline": {k: base_cpu / v["cpu_s"] for k, v in results.items()} if base_cpu else {},
            "agreement": {k: {kk: vv for kk, vv in v.items()} for k, v in comparisons.items()},
            "report": text,
        }
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=1)
        print(f"[bench] wrote {args.json}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
