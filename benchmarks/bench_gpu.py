"""GPU check of a paper-depth circuit build: per-transition time, TFLOP/s, memory, precision.

Workload (defaults): torchvision ``resnet50(weights=None)`` seeded (no download: the GPU
machine has no internet), its 11-layer preset, class 0, 50 seeded procedural images of
224 px (``bench_core.make_images``; 2,950 patches), tau 16, k 50, N 50 (``riemann_right``,
Eq. 2), all images used. The build runs in float32 (``ig_precision="fp32"``: TF32 off).
At every transition the integrated gradients of the same inputs (the build's own feature
maps and top-k patches) are run again with ``tf32`` and ``bf16`` for up to
``--compare-targets`` of its targets (64, evenly spaced; a target's scores depend on its
own pairs only), and each precision's core sets (top tau of the Eq. 2 score per target)
are compared with float32's: pooled Jaccard over (target, core neuron) pairs, per
transition and over all of them. Their TFLOP/s count their own (fewer) pairs.

Per transition it prints the targets, patches and pairs, the wall time (feature maps,
integrated gradients, clustering; the tf32/bf16 reruns not counted), the IG time of each
precision, achieved TFLOP/s and the peak GPU memory of the build in that transition
(``torch.cuda.max_memory_allocated`` from the end of the previous transition until its IG
ends; the reruns' own peaks are reported apart). FLOPs are counted analytically: the upper segment's forward
(once per patch and quadrature node, shared by its targets) plus its input-backward (once
per (target, patch) pair and node), each measured on one input with
``torch.utils.flop_counter.FlopCounterMode``.

A time guard (``--time-limit``, default 300 s) starts no transition, rerun or evaluation
that would not finish in time, so the run ends cleanly with what it measured. Then, if time
is left, the faithfulness evaluation (``neurflow.evaluate_circuit``, fidelity only) runs
on the circuit; any error there is reported, not raised. JSON goes to ``$OUT/gpu_check.json``
when ``$OUT`` is set, else ``benchmarks/results/gpu_<device>.json``.

    .venv/bin/python benchmarks/bench_gpu.py                      # on a GPU (benchmarks/gpu_check.sh)
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --tiny  # the same code path on a CPU, in minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_depth import OutOfTime, TransitionRecorder, make_images, make_model  # noqa: E402

OTHER_PRECISIONS = ("tf32", "bf16")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--tau", type=int, default=16)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--method", default="riemann_right")
    p.add_argument("--layers", type=int, default=0, help="use the preset's first L layers (0: all)")
    p.add_argument("--ig-batch", type=int, default=0, help="interpolated inputs per IG forward (0: 2048 on a GPU, the config's default on a CPU)")
    p.add_argument("--precisions", default=",".join(OTHER_PRECISIONS), help="IG precisions rerun and compared with fp32 ('' for none)")
    p.add_argument("--compare-targets", type=int, default=64, help="targets per transition rerun in each other precision (0: all)")
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds; nothing starts that would end after it")
    p.add_argument("--no-eval", action="store_true", help="skip the faithfulness evaluation")
    p.add_argument("--tiny", action="store_true", help="a minutes-long CPU-sized run: 2 images, 32 px, 3 layers, tau 4, k 10, N 4")
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    if args.tiny:
        args.images, args.size, args.layers, args.tau, args.k, args.steps = 2, 32, 3, 4, 10, 4
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def segment_flops(fn: Any, x: torch.Tensor) -> tuple[float, float]:
    """FLOPs of one forward and of one input-backward of ``fn`` on one input like ``x[0]``."""
    from torch.utils.flop_counter import FlopCounterMode

    from neurflow.segments import neuron_activations

    one = x[:1].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        with FlopCounterMode(display=False) as fwd:
            y = neuron_activations(fn(one))
        with FlopCounterMode(display=False) as bwd:
            torch.autograd.grad(y[:, 0].sum(), one)
    return float(fwd.get_total_flops()), float(bwd.get_total_flops())


def core_sets(pair_target: torch.Tensor, attr: torch.Tensor, targets: torch.Tensor, tau: int, aggregate: str) -> set[tuple[int, int]]:
    """``(target channel, core neuron)`` pairs: the top tau of each target's Eq. 2 score."""
    t_idx = pair_target.cpu().numpy()
    a = attr.detach().double().cpu().numpy()
    out: set[tuple[int, int]] = set()
    for t, channel in enumerate(targets.tolist()):
        rows = a[t_idx == t]
        score = np.abs(rows.sum(0)) if aggregate == "eq2" else np.abs(rows).mean(0)
        out.update((int(channel), int(c)) for c in np.argsort(-score, kind="stable")[:tau])
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import neurflow.build as build_mod
    from neurflow import CircuitConfig, build_circuit, preset_layers
    from neurflow.attribution import integrated_gradients_pairs

    started = time.perf_counter()
    deadline = started + args.time_limit
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    model = make_model(args.model).to(device)
    layers = list(preset_layers(args.model))
    layers = layers[: args.layers] if args.layers else layers
    images = make_images(args.images, args.size)
    ig_batch = args.ig_batch or (2048 if cuda else CircuitConfig().ig_batch)
    config = CircuitConfig(tau=args.tau, k=args.k, steps=args.steps, method=args.method, ig_batch=ig_batch)
    others = [p for p in args.precisions.split(",") if p]
    per_transition: list[dict[str, Any]] = []
    last_ig_s = {"fp32": 0.0}

    def measured_ig(fn, x, targets, membership, **kw):  # type: ignore[no-untyped-def]
        """The build's IG call, timed and counted; then the other precisions on the same inputs."""
        if per_transition:  # this transition, estimated from the last one by the targets' ratio
            estimate = clock["last_transition_s"] * max(1.0, int(targets.numel()) / per_transition[-1]["targets"])
            if time.perf_counter() + estimate > deadline:
                raise OutOfTime  # it would not end in time
        rec: dict[str, Any] = {"targets": int(targets.numel()), "patches": int(x.shape[0]), "pairs": int(membership.sum()), "input_shape": list(x.shape[1:])}
        fwd, bwd = segment_flops(fn, x)
        rec["flops"] = x.shape[0] * args.steps * fwd + rec["pairs"] * args.steps * bwd  # shared forward + one backward per pair
        sync(device)
        t0 = time.perf_counter()
        result = integrated_gradients_pairs(fn, x, targets, membership, **kw)
        sync(device)
        rec["ig_s"] = {"fp32": time.perf_counter() - t0}
        last_ig_s["fp32"] = rec["ig_s"]["fp32"]
        if cuda:
            rec["peak_gpu_mib_build"] = torch.cuda.max_memory_allocated(device) / 2**20
        # the reruns take at most --compare-targets targets (evenly spaced): the core sets of
        # a target depend on its own pairs only, so a sample compares like the whole
        n_t = int(targets.numel())
        pick = np.unique(np.linspace(0, n_t - 1, min(n_t, args.compare_targets)).round().astype(np.int64)) if args.compare_targets else np.arange(n_t)
        sub_targets, sub_member = targets[torch.as_tensor(pick)], membership[torch.as_tensor(pick)]
        keep = torch.isin(result[0].cpu(), torch.as_tensor(pick))
        remap = {int(t): i for i, t in enumerate(pick)}
        ref_rows = torch.tensor([remap[int(t)] for t in result[0].cpu()[keep]], dtype=torch.long)
        ref = core_sets(ref_rows, result[2].cpu()[keep], sub_targets, config.tau, config.aggregate)
        sub_pairs = int(sub_member.sum())
        rec["compared_targets"], rec["compared_pairs"] = int(len(pick)), sub_pairs
        sub_flops = x.shape[0] * args.steps * fwd + sub_pairs * args.steps * bwd
        rec["jaccard"], rec["peak_gpu_mib_ig"], rec["rerun_s"], rec["rerun_tflops"] = {}, {}, 0.0, {}
        for precision in others:
            if time.perf_counter() + 1.2 * last_ig_s["fp32"] * sub_pairs / max(1, rec["pairs"]) > deadline:
                rec["jaccard"][precision] = None  # skipped: no time left
                continue
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            t1 = time.perf_counter()
            other = integrated_gradients_pairs(fn, x, sub_targets, sub_member, **{**kw, "precision": precision})
            sync(device)
            rec["ig_s"][precision] = time.perf_counter() - t1
            rec["rerun_s"] += rec["ig_s"][precision]
            rec["rerun_tflops"][precision] = sub_flops / rec["ig_s"][precision] / 1e12
            if cuda:
                rec["peak_gpu_mib_ig"][precision] = torch.cuda.max_memory_allocated(device) / 2**20
            mine = core_sets(other[0], other[2], sub_targets, config.tau, config.aggregate)
            rec["jaccard"][precision] = {"shared": len(ref & mine), "union": len(ref | mine), "value": len(ref & mine) / len(ref | mine)}
            del other
        rec["tflops"] = {"fp32": rec["flops"] / rec["ig_s"]["fp32"] / 1e12, **rec["rerun_tflops"]}
        per_transition.append(rec)
        return result

    clock = {"last_boundary": time.perf_counter(), "last_transition_s": 0.0}

    def boundary() -> dict[str, Any]:
        """At the end of a transition (and of the activation pass): its peak memory; reset."""
        now = time.perf_counter()
        clock["last_transition_s"], clock["last_boundary"] = now - clock["last_boundary"], now
        if not cuda:
            return {}
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
        return {"peak_gpu_mib": peak}

    build_mod.integrated_gradients_pairs = measured_ig  # type: ignore[assignment]
    recorder = TransitionRecorder(on_boundary=boundary, verbose=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    circuit, complete = None, True
    t_build = time.perf_counter()
    try:
        circuit = build_circuit(model.to(device), images, 0, layers, config, model_name=args.model, progress=recorder)
    except OutOfTime:
        complete = False
    sync(device)
    build_s = time.perf_counter() - t_build
    transitions = recorder.transitions()
    for t, m in zip(transitions, per_transition):
        t.update(m)
        t["seconds"] -= m["rerun_s"]  # the build's own time
    activation = next(((e - s) for n, s, e in recorder.stages if n == "activations"), None)
    result: dict[str, Any] = {
        "benchmark": "bench_gpu",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "settings": {k: v for k, v in vars(args).items() if k != "json"} | {"ig_batch": ig_batch, "layers_used": layers},
        "complete": complete,
        "build_s": build_s,
        "activation_pass_s": activation,
        "transitions": transitions,
    }
    pooled: dict[str, Any] = {}
    for precision in others:
        cells = [t["jaccard"].get(precision) for t in transitions if t.get("jaccard")]
        cells = [c for c in cells if c]
        shared, union = sum(c["shared"] for c in cells), sum(c["union"] for c in cells)
        pooled[precision] = {"transitions": len(cells), "value": shared / union if union else None}
    result["pooled_jaccard_vs_fp32"] = pooled
    if cuda:
        result["peak_gpu_mib_process"] = torch.cuda.max_memory_allocated(device) / 2**20
    result["wall_s"] = time.perf_counter() - started
    if circuit is not None and not args.no_eval:
        save(result, args)  # kept even if the evaluation is cut off from outside
        result["evaluation"] = evaluate(model, circuit, images, deadline, device)
        result["wall_s"] = time.perf_counter() - started
    return result


def evaluate(model: torch.nn.Module, circuit: Any, images: torch.Tensor, deadline: float, device: torch.device) -> dict[str, Any]:
    """The fidelity experiment through the public API, guarded (the package is being reworked)."""
    left = deadline - time.perf_counter()
    if left < 60:
        return {"status": "skipped", "reason": f"{left:.0f} s left"}
    try:
        from neurflow import EvaluationConfig, evaluate_circuit

        t0 = time.perf_counter()
        ev = evaluate_circuit(model, circuit, images.to(device), experiments=("fidelity",), config=EvaluationConfig(fidelity_draws=2))
        out: dict[str, Any] = {"status": "ok", "seconds": time.perf_counter() - t0}
        summary = getattr(ev, "summary", None)
        try:
            json.dumps(summary)
            out["summary"] = summary
        except TypeError:
            out["summary"] = repr(summary)[:2000]
        return out
    except Exception as exc:  # noqa: BLE001 - a changed evaluation API must not fail the GPU check
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000]}


def report(r: dict[str, Any]) -> str:
    lines = [
        f"{r['device']} (torch {r['torch']}): {r['settings']['model']}, {r['settings']['images']} images of {r['settings']['size']} px, "
        f"{len(r['settings']['layers_used'])} layers, tau {r['settings']['tau']}, k {r['settings']['k']}, N {r['settings']['steps']} ({r['settings']['method']}), ig_batch {r['settings']['ig_batch']}",
        f"build {r['build_s']:.1f} s ({'complete' if r['complete'] else 'STOPPED by the time guard'}), activation pass {r['activation_pass_s'] or 0:.1f} s",
        f"{'transition':<26} {'targets':>7} {'patches':>7} {'pairs':>7} {'s':>7} {'IG fp32 s':>9} {'TFLOP':>7} {'TFLOP/s fp32/tf32/bf16':>24} {'peak GPU MiB':>12} {'Jaccard tf32/bf16':>18}",
    ]
    for t in r["transitions"]:
        tf = t.get("tflops", {})
        rates = "/".join(f"{tf[p]:.3g}" if p in tf else "-" for p in ("fp32", "tf32", "bf16"))
        jac = "/".join(f"{t['jaccard'][p]['value']:.3f}" if t.get("jaccard", {}).get(p) else "-" for p in ("tf32", "bf16"))
        lines.append(
            f"{t['upper'] + ' -> ' + t['lower']:<26} {t['targets']:>7} {t['patches']:>7} {t.get('pairs', 0):>7} {t['seconds']:>7.2f} "
            f"{t.get('ig_s', {}).get('fp32', float('nan')):>9.2f} {t.get('flops', 0) / 1e12:>7.3g} {rates:>24} {t.get('peak_gpu_mib', float('nan')):>12.0f} {jac:>18}"
        )
    for p, v in r["pooled_jaccard_vs_fp32"].items():
        lines.append(f"pooled Jaccard {p} vs fp32: {v['value'] if v['value'] is None else round(v['value'], 4)} over {v['transitions']} transitions")
    if "evaluation" in r:
        lines.append(f"evaluation: {json.dumps(r['evaluation'])[:600]}")
    lines.append(f"total {r.get('wall_s', float('nan')):.1f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu (e.g. --device cpu --tiny)", file=sys.stderr)
        return 2
    result = run(args)
    path = save(result, args)
    print(result["report"], flush=True)
    print(f"wrote {path}")
    return 0


def save(result: dict[str, Any], args: argparse.Namespace) -> str:
    """Write the JSON (with the printed report) to --json, $OUT/gpu_check.json or benchmarks/results/."""
    result["report"] = report(result)
    out = args.json or (str(Path(os.environ["OUT"]) / "gpu_check.json") if os.environ.get("OUT") else str(HERE / "results" / f"gpu_{torch.device(args.device).type}{'_tiny' if args.tiny else ''}.json"))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1, default=str))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
