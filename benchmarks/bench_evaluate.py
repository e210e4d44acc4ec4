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

**Before/after** (``--compare demo,resnet50``, writes ``results/evaluate_engines.json``): the
time of each experiment (optimality, fidelity, correlation) with the straightforward knock-out
engine (``KnockoutEngine(batched=False)``: the code path before the batched engine, one row per
(target, set), the prefix per batch of patches, every upper channel computed, top-k per row in
numpy) and with the batched one, in the same process, on

* ``demo``: the demo CNN and the artifacts of ``make demo`` (``--demo-root``), classes
  ``--demo-classes``, every transition, reduced settings (``--c-*`` options);
* ``resnet50``: ``weights=None``, ``--c-images`` seeded ``--c-size`` px images, a circuit over
  ``fc -> layer4.2 -> layer4.1`` built here, the transition ``--c-resnet-layer``.

It also checks that both engines give the same results (``identical``: every field of the
JSON of each result equal; ``max_abs_diff`` over its numbers) and, with ``--profile``,
prints where the straightforward path spends its time (cProfile, top functions).
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
    p.add_argument("--json", default=None, help="results file (default: results/evaluate.json, with --compare results/evaluate_engines.json)")
    g = p.add_argument_group("before/after (--compare)")
    g.add_argument("--compare", default="", help="workloads to time with both knock-out engines: demo, resnet50 (comma-separated)")
    g.add_argument("--demo-root", default=str(Path(__file__).resolve().parents[1] / ".neurflow" / "demo"))
    g.add_argument("--demo-classes", default="bee", help="demo classes (artifact folder suffixes), comma-separated")
    g.add_argument("--c-samples", type=int, default=2)
    g.add_argument("--c-random-sets", type=int, default=10)
    g.add_argument("--c-taus", default="4,8")
    g.add_argument("--c-max-cardinality", type=int, default=5)
    g.add_argument("--c-combinations", type=int, default=5)
    g.add_argument("--c-fidelity-draws", type=int, default=2)
    g.add_argument("--c-images", type=int, default=2, help="resnet50: images (59 patches each)")
    g.add_argument("--c-size", type=int, default=64, help="resnet50: input side")
    g.add_argument("--c-resnet-layer", default="layer4.1", help="resnet50: the lower layer of the timed transition")
    g.add_argument("--profile", action="store_true", help="cProfile the straightforward path of the first workload")
    args = p.parse_args(argv)
    if args.json is None:
        args.json = str(Path(__file__).resolve().parent / "results" / ("evaluate_engines.json" if args.compare else "evaluate.json"))
    return args


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
    if args.compare:
        return compare_main(args)
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


# --------------------------------------------------------------------------- before / after


def _load_demo(root: Path, name: str) -> tuple[Any, Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(model, circuit, class images in artifact order, fidelity images, labels) of one demo class."""
    from neurflow.ingest.images import load_class_images, scan_data
    from neurflow.ingest.models import load_model
    from neurflow.ingest.pipeline import read_artifact

    folders = sorted(p for p in (root / "artifacts" / "demo").iterdir() if p.name.split("-", 1)[-1] == name)
    if not folders:
        raise SystemExit(f"no demo artifact of class '{name}' under {root / 'artifacts' / 'demo'} (run 'make demo')")
    circuit, _, _ = read_artifact(folders[0])
    spec = load_model("demo", None, demo_root=root)
    data = scan_data(root / "world" / "val", spec.categories, 5)
    imgs = load_class_images(data, circuit.class_index, spec.preprocess)
    row = {i: r for r, i in enumerate(imgs.ids)}
    images = imgs.tensor[torch.as_tensor([row[i] for i in circuit.image_ids], dtype=torch.long)]
    labels = torch.full((len(imgs.ids),), circuit.class_index, dtype=torch.long)
    return spec.module.eval(), circuit, images, imgs.tensor, labels


def _resnet_workload(args: argparse.Namespace, device: torch.device) -> tuple[Any, Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    import torchvision

    from neurflow import CircuitConfig, build_circuit

    torch.manual_seed(args.seed)
    model = torchvision.models.resnet50(weights=None).eval().to(device)
    images = make_images(args.c_images, args.c_size, args.seed).to(device)
    with torch.no_grad():
        cls = int(torch.mode(model(images).argmax(1)).values)
    layers = ["fc", "layer4.2", "layer4.1"]
    circuit = build_circuit(model, images, cls, layers, CircuitConfig(tau=8, k=20, steps=2, method="gausslegendre"), model_name="resnet50")
    labels = torch.full((len(images),), cls, dtype=torch.long)
    return model, circuit, images, images, labels


def _max_abs_diff(a: Any, b: Any) -> float:
    """The largest difference between the numbers of two JSON documents of the same shape."""
    if isinstance(a, dict):
        return max([_max_abs_diff(a[k], b[k]) for k in a], default=0.0)
    if isinstance(a, list):
        return max([_max_abs_diff(x, y) for x, y in zip(a, b)], default=0.0)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b))
    return 0.0 if a == b else float("inf")


def _time_both(model: Any, circuit: Any, images: torch.Tensor, eval_images: torch.Tensor, labels: torch.Tensor, cfg: Any, device: torch.device, profile: bool) -> dict[str, Any]:
    """Each experiment with the straightforward engine, then with the batched one."""
    from neurflow.evaluation import correlation, fidelity, optimality, to_jsonable
    from neurflow.intervention import KnockoutEngine
    from neurflow.segments import split_model

    images = images.to(device)
    eval_images = eval_images.to(device)
    split = split_model(model, circuit.layers)
    uppers = [u for u, lo in zip(circuit.layers[:-1], circuit.layers[1:]) if cfg.layers is None or lo in cfg.layers]
    out: dict[str, Any] = {}
    docs: dict[str, dict[str, Any]] = {}
    for engine in ("before", "after"):
        batched = engine == "after"
        engines = {u: KnockoutEngine(split, u, images, circuit.patches, batch_size=cfg.batch_size, max_batch=cfg.max_batch, batched=batched) for u in uppers}
        if not batched:  # the old path also took the top-k of each row in numpy
            for e in engines.values():
                e.concepts = _numpy_top_k_concepts(e)  # type: ignore[method-assign]
        runs = {
            "optimality": lambda: optimality(model, circuit, images, cfg, engines=engines),
            "fidelity": lambda: fidelity(model, circuit, eval_images, labels, cfg),
            "correlation": lambda: correlation(model, circuit, images, cfg, engines=engines if batched else {u: _fresh(e) for u, e in engines.items()}),
        }
        times = {}
        for name, run in runs.items():
            prof = None
            if profile and not batched and name == "optimality":
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            sync(device)
            t0 = time.perf_counter()
            docs.setdefault(name, {})[engine] = to_jsonable(run())
            sync(device)
            times[name] = time.perf_counter() - t0
            if prof is not None:
                import io
                import pstats

                prof.disable()
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(8)
                print("\n".join(line for line in buf.getvalue().splitlines() if line.strip())[-2500:], flush=True)
            print(f"    {engine:<7} {name:<12} {times[name]:8.2f} s", flush=True)
        out[engine] = {k: round(v, 3) for k, v in times.items()}
    out["ratio"] = {k: round(out["before"][k] / max(out["after"][k], 1e-9), 2) for k in out["before"]}
    out["total"] = {e: round(sum(out[e].values()), 3) for e in ("before", "after")}
    out["total"]["ratio"] = round(out["total"]["before"] / max(out["total"]["after"], 1e-9), 2)
    out["identical"] = {k: docs[k]["before"] == docs[k]["after"] for k in docs}
    out["max_abs_diff"] = {k: _max_abs_diff(docs[k]["before"], docs[k]["after"]) for k in docs}
    return out


def _fresh(engine: Any) -> Any:
    """A new straightforward engine like ``engine`` (the old path shared nothing between experiments)."""
    from neurflow.intervention import KnockoutEngine

    e = KnockoutEngine(engine.split, engine.upper, engine.images, engine.grid, batch_size=engine.batch_size, max_batch=engine.max_batch, batched=False)
    e.concepts = _numpy_top_k_concepts(e)  # type: ignore[method-assign]
    return e


def _numpy_top_k_concepts(engine: Any) -> Any:
    from neurflow.activations import top_k

    def concepts(sets: Any, targets: Any, k: int, *, bar: Any = None) -> np.ndarray:
        acts = engine.activations(sets, targets, bar=bar)
        return np.stack([top_k(acts[i], k) for i in range(len(sets))]) if len(sets) else np.zeros((0, k), dtype=np.int64)

    return concepts


def compare_main(args: argparse.Namespace) -> int:
    from neurflow.evaluation import EvaluationConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    taus = tuple(int(t) for t in args.c_taus.split(","))
    settings = {
        "samples": args.c_samples, "random_sets": args.c_random_sets, "taus": list(taus), "max_cardinality": args.c_max_cardinality,
        "combinations": args.c_combinations, "fidelity_draws": args.c_fidelity_draws, "batch_size": args.batch_size, "max_batch": args.max_batch, "seed": args.seed,
    }  # fmt: skip
    rows = []
    profile = args.profile
    for workload in [w for w in args.compare.split(",") if w]:
        if workload == "demo":
            for name in [c for c in args.demo_classes.split(",") if c]:
                model, circuit, images, eval_images, labels = _load_demo(Path(args.demo_root), name)
                model.to(device)
                cfg = EvaluationConfig(**{**settings, "taus": taus})
                print(f"demo class {name}: {len(circuit.patches)} patches, layers {list(circuit.layers)}, {len(eval_images)} fidelity images", flush=True)
                res = _time_both(model, circuit, images, eval_images, labels, cfg, device, profile)
                profile = False
                rows.append({"workload": "demo", "class": name, "patches": len(circuit.patches), "transitions": "all", **res})
        elif workload == "resnet50":
            model, circuit, images, eval_images, labels = _resnet_workload(args, device)
            lower = args.c_resnet_layer
            cfg = EvaluationConfig(**{**settings, "taus": taus}, layers=(lower,))
            upper = circuit.layers[circuit.layers.index(lower) - 1]
            print(f"resnet50 {args.c_size}px: {len(circuit.patches)} patches, transition {upper} -> {lower}", flush=True)
            res = _time_both(model, circuit, images, eval_images, labels, cfg, device, profile)
            profile = False
            rows.append({"workload": "resnet50", "class": circuit.class_index, "patches": len(circuit.patches), "transitions": f"{upper} -> {lower}", **res})
        else:
            raise SystemExit(f"unknown workload '{workload}' (demo, resnet50)")
    doc = {
        "benchmark": "neurflow.evaluation: straightforward vs batched knock-out engine",
        "environment": {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg()[0],
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "settings": settings,
        "resnet50": {"images": args.c_images, "size": args.c_size, "lower_layer": args.c_resnet_layer, "circuit": "tau 8, k 20, IG steps 2"},
        "results": rows,
    }
    print()
    print(f"{'workload':<10} {'class':<6} {'experiment':<12} {'before s':>9} {'after s':>9} {'ratio':>7}  identical")
    for r in rows:
        for k in ("optimality", "fidelity", "correlation"):
            print(f"{r['workload']:<10} {str(r['class']):<6} {k:<12} {r['before'][k]:>9.2f} {r['after'][k]:>9.2f} {r['ratio'][k]:>7.2f}  {r['identical'][k]} (max diff {r['max_abs_diff'][k]:.2g})")
        print(f"{r['workload']:<10} {str(r['class']):<6} {'total':<12} {r['total']['before']:>9.2f} {r['total']['after']:>9.2f} {r['total']['ratio']:>7.2f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(finite(doc), indent=1, allow_nan=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
