#!/usr/bin/env python
"""Runtime of the Section 4 experiments (``neurflow.evaluation``) at the paper's sizes.

Workload: torchvision ``resnet50`` (``weights=None``, seeded, eval mode), a few seeded
procedural 224x224 images (59 patches each: scales 1 / 0.5 / 0.25, stride 0.5), a circuit of
the class the model predicts for them, built with tau=16 and k=50 over
``fc -> layer4.2 -> layer4.1`` (the build's IG uses few steps: the integration steps do not
change the cost of the experiments, only of the build, which is reported separately).

Per layer transition (``--transitions``: the lower layers, ``layer4.2`` for
``fc -> layer4.2`` and ``layer4.1`` for ``layer4.2 -> layer4.1``) and experiment:

* optimality (Figure 4): R=100 random sets per target and tau, taus 4/8/16;
* correlation (Figure 6): cardinalities 1..50, 100 random combinations each;
* fidelity (Figure 5): taus 4/8/16, 10 random draws per cell, on ``--eval-images`` images.

Targets per transition: ``--samples`` (5; the transition ``fc -> layer4.2`` has only one
target, the class logit). The cost of optimality and correlation is one prefix pass over the
patches plus one segment pass per knocked-out set; for transitions listed in ``--reduce``
(default ``layer4.1``, whose segment is a full bottleneck block and too slow at full size on
a CPU) a smaller number of sets is run and the full-size time is extrapolated as
``prefix + per-set time * sets``; the JSON says which figures are measured and which are
extrapolated.

Usage::

    python benchmarks/bench_evaluate.py                       # CPU, writes benchmarks/results/evaluate.json
    python benchmarks/bench_evaluate.py --device cuda --reduce ""   # everything at full size on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UPPER = {"layer4.2": "fc", "layer4.1": "layer4.2"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=2, help="synthetic class images (59 patches each)")
    p.add_argument("--eval-images", type=int, default=8, help="images of the fidelity experiment")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--transitions", default="layer4.2,layer4.1", help="lower layers of the transitions to time")
    p.add_argument("--reduce", default="layer4.1", help="transitions run with fewer sets and extrapolated ('' = none)")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--random-sets", type=int, default=100)
    p.add_argument("--taus", default="4,8,16")
    p.add_argument("--max-cardinality", type=int, default=50)
    p.add_argument("--combinations", type=int, default=100)
    p.add_argument("--fidelity-draws", type=int, default=10)
    p.add_argument("--tau", type=int, default=16, help="the circuit's tau")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--build-steps", type=int, default=4, help="IG steps of the build (not part of the experiments)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-batch", type=int, default=512)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "evaluate.json"))
    return p.parse_args(argv)


def make_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Seeded smooth colour fields with stripes and discs, ImageNet-normalised ``[n, 3, S, S]``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    out = []
    for _ in range(n):
        img = F.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=(size, size), mode="bicubic", align_corners=False)[0]
        theta = float(torch.rand(1, generator=g)) * math.pi
        freq = 0.05 + 0.25 * float(torch.rand(1, generator=g))
        img = img * (0.7 + 0.3 * torch.sin(freq * (xx * math.cos(theta) + yy * math.sin(theta))))
        for _ in range(4):
            cx, cy = (float(v) for v in torch.rand(2, generator=g) * size)
            r = size * (0.05 + 0.15 * float(torch.rand(1, generator=g)))
            img = torch.where((xx - cx) ** 2 + (yy - cy) ** 2 < r**2, torch.rand(3, 1, 1, generator=g).expand_as(img), img)
        out.append((img + 0.03 * torch.randn(img.shape, generator=g)).clamp(0, 1))
    x = torch.stack(out)
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def optimality_sets(targets: int, taus: int, r: int) -> int:
    """Knocked-out sets of the optimality experiment: per target V_a itself, per tau core + R."""
    return targets * (1 + taus * (1 + r))


def correlation_sets(targets: int, width: int, max_card: int, combos: int) -> int:
    cards = range(1, max(1, min(max_card, width - 1)) + 1)
    return targets * (1 + sum(min(math.comb(width, m), combos) for m in cards))


def finite(value: Any) -> Any:
    """NaN and infinities as None, so the results file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torchvision

    from neurflow import CircuitConfig, build_circuit
    from neurflow.evaluation import EvaluationConfig, correlation, fidelity, optimality
    from neurflow.segments import split_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    taus = tuple(int(t) for t in args.taus.split(","))
    lowers = [x for x in args.transitions.split(",") if x]
    reduce = {x for x in args.reduce.split(",") if x}
    layers = ["fc", "layer4.2", "layer4.1"] if "layer4.1" in lowers else ["fc", "layer4.2"]

    torch.manual_seed(args.seed)
    model = torchvision.models.resnet50(weights=None).eval().to(device)
    images = make_images(args.images, args.image_size, args.seed).to(device)
    eval_images = make_images(args.eval_images, args.image_size, args.seed + 1).to(device)
    with torch.no_grad():
        cls = int(torch.mode(model(images).argmax(1)).values)
        eval_labels = model(eval_images).argmax(1).cpu()  # random weights: label = the unmasked prediction
    eval_labels[: max(1, len(eval_labels) // 2)] = cls  # at least half the images count as the class's

    sync(device)
    t0 = time.perf_counter()
    circuit = build_circuit(
        model, images, cls, layers, CircuitConfig(tau=args.tau, k=args.k, steps=args.build_steps, method="gausslegendre"), model_name="resnet50"
    )
    sync(device)
    build_s = time.perf_counter() - t0
    split = split_model(model, layers)
    with torch.no_grad():
        widths = {name: int(v.shape[1]) for name, v in split.extractor()(images[:1]).items()}
    n_patches = len(circuit.patches)
    print(f"resnet50 (weights=None) on {device}, {torch.get_num_threads()} threads; class {cls}; {args.images} images = {n_patches} patches; "
          f"build {build_s:.1f} s (IG steps {args.build_steps})", flush=True)

    rows: list[dict[str, Any]] = []

    def record(lower: str, experiment: str, seconds: float, sets_run: int, sets_full: int, measured: bool, prefix_s: float | None, extra: dict | None = None) -> None:
        if measured:
            full_s = seconds
        else:
            per_set = (seconds - (prefix_s or 0.0)) / max(sets_run, 1)
            full_s = (prefix_s or 0.0) + per_set * sets_full
        row = {
            "transition": f"{UPPER[lower]} -> {lower}",
            "experiment": experiment,
            "seconds_run": round(seconds, 3),
            "sets_run": sets_run,
            "sets_full": sets_full,
            "seconds_full": round(full_s, 3),
            "full_size": "measured" if measured else "extrapolated",
            "segment_inputs_per_s": round(sets_run * n_patches / max(seconds - (prefix_s or 0.0), 1e-9), 1) if experiment != "fidelity" else None,
            **(extra or {}),
        }
        rows.append(row)
        print(f"  {row['transition']:<22} {experiment:<12} run {seconds:8.1f} s ({sets_run} sets)  full size {full_s:9.1f} s "
              f"({sets_full} sets, {row['full_size']})", flush=True)

    for lower in lowers:
        upper = UPPER[lower]
        n_targets = min(args.samples, sum(1 for t in circuit.targets if t.target.layer == upper))
        width = widths[lower]
        reduced = lower in reduce
        # the prefix pass alone (what every knock-out experiment pays once per transition)
        extractor = split.extractor([lower])
        from neurflow.patches import iter_patch_batches

        sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            for _, batch in iter_patch_batches(images, circuit.patches, args.batch_size):
                extractor(batch)
        sync(device)
        prefix_s = time.perf_counter() - t0
        print(f"  {upper + ' -> ' + lower:<22} prefix pass over D: {prefix_s:.1f} s; {n_targets} target(s); lower width {width}", flush=True)

        full_opt = optimality_sets(n_targets, len({min(t, args.tau) for t in taus}), args.random_sets)
        cfg = EvaluationConfig(
            samples=1 if reduced else args.samples, random_sets=10 if reduced else args.random_sets, taus=(args.tau,) if reduced else taus,
            layers=(lower,), batch_size=args.batch_size, max_batch=args.max_batch, seed=args.seed,
        )  # fmt: skip
        run_sets = optimality_sets(min(cfg.samples, n_targets), len(cfg.taus), cfg.random_sets)
        sync(device)
        t0 = time.perf_counter()
        opt = optimality(model, circuit, images, cfg)
        sync(device)
        record(lower, "optimality", time.perf_counter() - t0, run_sets, full_opt, not reduced, prefix_s,
               {"pooled_mean_diff": opt.pooled_mean_diff, "frac_random_better": opt.pooled_frac_random_better})  # fmt: skip

        full_cor = correlation_sets(n_targets, width, args.max_cardinality, args.combinations)
        cfg = EvaluationConfig(
            samples=1 if reduced else args.samples, max_cardinality=args.max_cardinality, combinations=1 if reduced else args.combinations,
            layers=(lower,), batch_size=args.batch_size, max_batch=args.max_batch, seed=args.seed,
        )  # fmt: skip
        run_sets = correlation_sets(min(cfg.samples, n_targets), width, cfg.max_cardinality, cfg.combinations)
        sync(device)
        t0 = time.perf_counter()
        cor = correlation(model, circuit, images, cfg)
        sync(device)
        record(lower, "correlation", time.perf_counter() - t0, run_sets, full_cor, not reduced, prefix_s,
               {"mean_spearman": cor.mean_spearman, "spearman_m1": cor.cells[0].spearman if cor.cells else None})  # fmt: skip

        cfg = EvaluationConfig(taus=taus, fidelity_draws=args.fidelity_draws, layers=(lower,), batch_size=args.batch_size, seed=args.seed)
        sync(device)
        t0 = time.perf_counter()
        fid = fidelity(model, circuit, eval_images, eval_labels, cfg)
        sync(device)
        forwards = len(fid.cells) * 2 * (1 + args.fidelity_draws)
        record(lower, "fidelity", time.perf_counter() - t0, forwards, forwards, True, None,
               {"forward_passes": forwards, "eval_images": args.eval_images, "mask_core": float(np.mean([c.mask_core for c in fid.cells]))})  # fmt: skip

    doc = {
        "benchmark": "neurflow.evaluation at the paper's sizes",
        "environment": {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg()[0],
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "workload": {
            "model": "torchvision resnet50, weights=None, seed %d" % args.seed,
            "class_index": cls,
            "images": args.images,
            "patches": n_patches,
            "eval_images": args.eval_images,
            "tau": args.tau,
            "k": args.k,
            "samples": args.samples,
            "random_sets": args.random_sets,
            "taus": list(taus),
            "max_cardinality": args.max_cardinality,
            "combinations": args.combinations,
            "fidelity_draws": args.fidelity_draws,
            "reduced_transitions": sorted(reduce & set(lowers)),
            "batch_size": args.batch_size,
            "max_batch": args.max_batch,
        },
        "build_seconds": round(build_s, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "peak_cuda_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
        "results": rows,
    }
    print()
    print(f"{'transition':<22} {'experiment':<12} {'run s':>9} {'sets run':>9} {'full-size s':>12} {'sets full':>10}  full size")
    for r in rows:
        print(f"{r['transition']:<22} {r['experiment']:<12} {r['seconds_run']:>9.1f} {r['sets_run']:>9} {r['seconds_full']:>12.1f} {r['sets_full']:>10}  {r['full_size']}")
    print(f"peak RSS {doc['peak_rss_mib']:.0f} MiB")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(finite(doc), indent=1, allow_nan=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
