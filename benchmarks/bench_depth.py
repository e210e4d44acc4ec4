"""Circuit builds at paper depth on the CPU: per-transition size, time and peak memory.

Workload: torchvision ``resnet50`` and ``googlenet`` (``weights=None``, seeded), each with
its paper layer preset (11 layers, logit layer first), seeded procedural images (the ones
of ``bench_core.py``) at a reduced resolution, class 0, all images used, tau/k as in the
paper, few Gauss-Legendre nodes. Each (model, image count) runs in its own subprocess so
that its peak RSS is its own. Two image counts (``--images 2,8``: 4x apart) show how time
and memory grow with the patch dataset.

Per transition ``upper -> lower`` it reports the targets, the union of their top-k patches
(the inputs of integrated gradients), the (target, patch) pairs, the wall time (from the end
of the previous transition to the end of this one's clustering: feature maps, integrated
gradients, clustering) and the peak RSS in that window (sampled every 20 ms from
``/proc/self/statm``).

Dense vs pairs: after the build, the integrated gradients of the deepest transition that
ran are run again on the same inputs for ``--dense-targets`` of its targets (each target
has k pairs, so the ratio of the two storages, U/k, does not depend on how many are kept), once storing only the pairs
(:func:`neurflow.attribution.integrated_gradients_pairs`, what the build does) and once
through the dense wrapper :func:`neurflow.attribution.integrated_gradients`, which keeps a
``[T, U, C_in]`` tensor like the storage the build had before; the peak RSS growth of each
call and the stored bytes are reported.

    .venv/bin/python benchmarks/bench_depth.py --time-limit 600             # both models, 2 and 8 images
    .venv/bin/python benchmarks/bench_depth.py --models resnet50 --images 2 --size 32 --json /tmp/d.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

IG_STAGE = re.compile(r"integrated gradients (\S+) -> (\S+): (\d+) targets, (\d+) patches")


# ----------------------------------------------------------------------------- measuring


def current_rss_mib() -> float:
    """Resident set size of this process now, MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler:
    """Samples this process's RSS in a background thread; ``peak(t0, t1)`` over a window."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), current_rss_mib()))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, t0: float, t1: float) -> float:
        """Largest RSS sampled in ``[t0, t1]`` (also the last sample before ``t0``), MiB."""
        inside = [r for t, r in self.samples if t0 <= t <= t1]
        before = [r for t, r in self.samples if t < t0]
        inside.append(current_rss_mib() if not self.samples else (before[-1] if before else self.samples[0][1]))
        return max(inside)


class TransitionRecorder:
    """A ``progress`` factory for ``build_circuit`` that cuts the build into transitions.

    A transition ends when its clustering stage closes; it starts where the previous one
    (or the activation pass) ended. ``on_boundary`` is called at each boundary (e.g. to
    reset the CUDA peak-memory counter) and its return value is kept for the transition
    that ends there.
    """

    def __init__(self, on_boundary: Callable[[], Any] | None = None, verbose: bool = False) -> None:
        self.verbose = verbose
        self.stages: list[tuple[str, float, float]] = []
        self.boundaries: list[tuple[float, Any]] = []
        self.on_boundary = on_boundary
        self.started = time.perf_counter()

    def __call__(self, name: str, total: int) -> Any:
        recorder, opened = self, time.perf_counter()

        class _Bar:
            def update(self, n: int = 1) -> None:
                pass

            def close(self) -> None:
                now = time.perf_counter()
                recorder.stages.append((name, opened, now))
                if recorder.verbose:
                    print(f"    [{now - recorder.started:7.1f} s] {name}: {now - opened:.1f} s", file=sys.stderr, flush=True)
                if name == "activations" or name.startswith("clustering "):
                    extra = recorder.on_boundary() if recorder.on_boundary is not None else None
                    recorder.boundaries.append((time.perf_counter(), extra))

        return _Bar()

    def transitions(self, sampler: RssSampler | None = None) -> list[dict[str, Any]]:
        """One record per transition: layers, targets, patches, seconds, IG seconds, peak RSS."""
        out: list[dict[str, Any]] = []
        igs = [(IG_STAGE.match(n), t0, t1) for n, t0, t1 in self.stages if n.startswith("integrated gradients")]
        for i, (m, t0, t1) in enumerate(igs):
            if m is None or i + 1 >= len(self.boundaries):
                continue
            start, end = self.boundaries[i][0], self.boundaries[i + 1][0]
            rec: dict[str, Any] = {
                "upper": m.group(1),
                "lower": m.group(2),
                "targets": int(m.group(3)),
                "patches": int(m.group(4)),
                "seconds": end - start,
                "ig_seconds": t1 - t0,
            }
            if sampler is not None:
                rec["peak_rss_mib"] = sampler.peak(start, end)
            if self.boundaries[i + 1][1] is not None:
                rec.update(self.boundaries[i + 1][1])
            out.append(rec)
        return out


class OutOfTime(Exception):
    """Raised between transitions once a run's time limit has passed (a clean stop)."""


# ----------------------------------------------------------------------------- set-up


def make_model(name: str, seed: int = 0) -> nn.Module:
    """A torchvision model with seeded random weights (no download), in eval mode."""
    import torchvision

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"init_weights": True, "aux_logits": False} if name == "googlenet" else {}
    return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def make_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """The seeded procedural images of ``bench_core.py`` (normalised), ``[n, 3, size, size]``."""
    from bench_core import make_images as procedural

    return procedural(n, size, seed)


# ----------------------------------------------------------------------------- worker


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One build in this process; the dense/pairs comparison on its deepest transition."""
    import neurflow.build as build_mod
    from neurflow import CircuitConfig, build_circuit, make_patch_grid, preset_layers
    from neurflow.attribution import integrated_gradients, integrated_gradients_pairs

    if args.threads:
        torch.set_num_threads(args.threads)
    model = make_model(args.model)
    layers = list(preset_layers(args.model))
    images = make_images(args.worker_images, args.size)
    config = CircuitConfig(tau=args.tau, k=args.k, steps=args.steps, method=args.method)
    captured: list[tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    deadline = time.perf_counter() + args.time_limit if args.time_limit else float("inf")

    last = {"targets": 0, "start": 0.0}

    def capturing(fn, x, targets, membership, **kw):  # type: ignore[no-untyped-def]
        now = time.perf_counter()
        if last["targets"]:  # this transition, estimated from the last one (IG call to IG call) by the targets' ratio
            estimate = (now - last["start"]) * max(1.0, int(targets.numel()) / last["targets"])
            if now + estimate > deadline:
                raise OutOfTime
        last["start"] = now
        result = integrated_gradients_pairs(fn, x, targets, membership, **kw)
        # the deepest so far, cut to --dense-targets evenly spaced targets: each target has k
        # pairs, so the dense / pairs ratio (U / k) does not depend on how many are kept
        n = int(targets.numel())
        pick = torch.as_tensor(np.unique(np.linspace(0, n - 1, min(n, args.dense_targets)).round().astype(np.int64)))
        captured[:] = [(fn, x.detach().clone(), targets[pick].clone(), membership[pick].clone())]
        last["targets"] = n
        return result

    build_mod.integrated_gradients_pairs = capturing  # type: ignore[assignment]
    rec = TransitionRecorder(verbose=True)
    rss_setup = current_rss_mib()
    t0 = time.perf_counter()
    complete = True
    with RssSampler() as sampler:
        try:
            circuit = build_circuit(model, images, 0, layers, config, progress=rec)
        except OutOfTime:
            circuit, complete = None, False
        wall = time.perf_counter() - t0
        transitions = rec.transitions(sampler)
        act = next(((s, e) for n, s, e in rec.stages if n == "activations"), (t0, t0))
        peak_build = sampler.peak(t0, t0 + wall)
        dense_rows = []
        for fn, x, targets, membership in captured:
            row: dict[str, Any] = {"targets": int(targets.numel()), "patches": int(x.shape[0]), "channels": int(x.shape[1]), "n_pairs": int(membership.sum())}
            for storage, call in (("pairs", integrated_gradients_pairs), ("dense", integrated_gradients)):
                base = current_rss_mib()
                s0 = time.perf_counter()
                result = call(fn, x, targets, membership, steps=config.steps, method=config.method, max_batch=config.ig_batch)
                s1 = time.perf_counter()
                stored = sum(t.numel() * t.element_size() for t in (result if isinstance(result, tuple) else (result,)))
                del result
                time.sleep(0.1)
                row[storage] = {"seconds": s1 - s0, "rss_growth_mib": sampler.peak(s0, s1 + 0.05) - base, "stored_mib": stored / 2**20}
            row["stored_ratio"] = row["dense"]["stored_mib"] / row["pairs"]["stored_mib"]
            row["rss_growth_ratio"] = row["dense"]["rss_growth_mib"] / max(row["pairs"]["rss_growth_mib"], 1e-9)
            dense_rows.append(row)
    return {
        "model": args.model,
        "images": args.worker_images,
        "patches": len(make_patch_grid(args.worker_images, args.size)),
        "complete": complete,
        "time_limit_s": args.time_limit,
        "wall_s": wall,
        "activation_pass_s": act[1] - act[0],
        "rss_setup_mib": rss_setup,
        "peak_rss_build_mib": peak_build,
        "peak_rss_process_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "transitions": transitions,
        "dense_vs_pairs": dense_rows,
        "core_neurons": sum(len(c.core) for c in circuit.targets) if circuit is not None else None,
        "groups": len(circuit.groups) if circuit is not None else None,
    }


# ----------------------------------------------------------------------------- driver


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet50,googlenet")
    p.add_argument("--images", default="2,8", help="comma-separated image counts")
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--tau", type=int, default=16)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--method", default="gausslegendre")
    p.add_argument("--time-limit", type=float, default=0, help="per run: start no transition that would end after this many seconds (0: none)")
    p.add_argument("--dense-targets", type=int, default=16, help="targets of the deepest transition rerun dense vs pairs")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", default=str(HERE / "results" / "depth_cpu.json"))
    p.add_argument("--annotate", action="store_true", help="add the IG storage sizes to an existing --json file and print it")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default="resnet50", help=argparse.SUPPRESS)
    p.add_argument("--worker-images", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--out", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def annotate(doc: dict[str, Any]) -> dict[str, Any]:
    """Add each transition's IG storage, pairs vs dense, computed from its sizes.

    Pairs: ``targets x k`` rows of ``C_in`` float32 plus two int64 indices per pair; dense:
    ``targets x patches x C_in`` float32 (the storage before pairs). ``C_in`` is the lower
    layer's channel count, read from one forward pass of the model.
    """
    from neurflow import preset_layers, split_model

    k = int(doc["settings"]["k"])
    channels: dict[str, dict[str, int]] = {}
    for r in doc["runs"]:
        if r["model"] not in channels:
            layers = list(preset_layers(r["model"]))
            with torch.no_grad():
                feats = split_model(make_model(r["model"]), layers).extractor(layers)(torch.zeros(1, 3, 64, 64))
            channels[r["model"]] = {name: int(v.shape[1]) for name, v in feats.items()}
        for t in r["transitions"]:
            c, pairs = channels[r["model"]][t["lower"]], t["targets"] * min(k, r["patches"])
            t["pairs_mib"] = (pairs * c * 4 + pairs * 16) / 2**20
            t["dense_mib"] = t["targets"] * t["patches"] * c * 4 / 2**20
    doc["report"] = "\n".join(format_run(r) for r in doc["runs"])
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.annotate:
        doc = annotate(json.loads(Path(args.json).read_text()))
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(doc["report"])
        return 0
    if args.worker:
        result = worker(args)
        Path(args.out).write_text(json.dumps(result))
        return 0
    runs = []
    for model in args.models.split(","):
        for n in (int(v) for v in args.images.split(",")):
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
                out = fh.name
            cmd = [sys.executable, __file__, "--worker", "--model", model, "--worker-images", str(n), "--out", out,
                   "--size", str(args.size), "--tau", str(args.tau), "--k", str(args.k), "--steps", str(args.steps),
                   "--method", args.method, "--time-limit", str(args.time_limit), "--dense-targets", str(args.dense_targets), "--threads", str(args.threads)]
            print(f"[depth] {model}, {n} images ...", flush=True)
            t0 = time.time()
            subprocess.run(cmd, check=True)
            run = json.loads(Path(out).read_text())
            os.unlink(out)
            run["load1_end"] = os.getloadavg()[0]
            runs.append(run)
            print(f"[depth] {model}, {n} images: {time.time() - t0:.0f} s", flush=True)
            print(format_run(run), flush=True)
    doc: dict[str, Any] = {
        "benchmark": "bench_depth",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "settings": {k: getattr(args, k) for k in ("models", "images", "size", "tau", "k", "steps", "method", "time_limit", "dense_targets", "threads")},
        "runs": runs,
    }
    doc = annotate(doc)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"[depth] wrote {args.json}")
    return 0


def format_run(r: dict[str, Any]) -> str:
    """The printed report of one run: per transition, then dense vs pairs."""
    lines = [
        f"{r['model']}, {r['images']} images ({r['patches']} patches): build {r['wall_s']:.1f} s"
        f"{'' if r.get('complete', True) else ' (stopped by the time limit: the transitions below ran)'} "
        f"(activation pass {r['activation_pass_s']:.1f} s), peak RSS {r['peak_rss_build_mib']:.0f} MiB "
        f"(after set-up {r['rss_setup_mib']:.0f})",
        f"  {'transition':<28} {'targets':>7} {'patches':>7} {'s':>8} {'IG s':>8} {'peak RSS MiB':>12} {'IG store pairs/dense MiB':>25}",
    ]
    for t in r["transitions"]:
        store = f"{t['pairs_mib']:.1f}/{t['dense_mib']:.1f}" if "dense_mib" in t else "-"
        lines.append(
            f"  {t['upper'] + ' -> ' + t['lower']:<28} {t['targets']:>7} {t['patches']:>7} {t['seconds']:>8.2f} "
            f"{t['ig_seconds']:>8.2f} {t.get('peak_rss_mib', float('nan')):>12.0f} {store:>25}"
        )
    for d in r["dense_vs_pairs"]:
        lines.append(
            f"  IG rerun, T={d['targets']} x U={d['patches']} x C_in={d['channels']} ({d['n_pairs']} pairs): "
            f"stored pairs {d['pairs']['stored_mib']:.1f} MiB vs dense {d['dense']['stored_mib']:.1f} MiB ({d['stored_ratio']:.1f}x); "
            f"RSS growth {d['pairs']['rss_growth_mib']:.0f} vs {d['dense']['rss_growth_mib']:.0f} MiB; "
            f"{d['pairs']['seconds']:.1f} s vs {d['dense']['seconds']:.1f} s"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
