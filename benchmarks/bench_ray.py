"""The Ray executor against the local one: wall time of N demo-sized classes, same bytes.

```
.venv/bin/python benchmarks/bench_ray.py                                   # 20 classes, CPU, Ray with 2 CPUs
.venv/bin/python benchmarks/bench_ray.py --classes 8 --images-per-class 10 --json /tmp/ray.json   # quick check
.venv/bin/python benchmarks/bench_ray.py --device cuda --gpus-per-class 0.25 --cpus-per-class 2 \\
    --json benchmarks/results/ray_cuda.json                                 # 4 classes per GPU vs one at a time
```

Workload: the demo CNN (``make demo`` trains it into ``--demo-root``) with its ``fc`` tiled to
``--classes`` outputs (class i has the weights of demo class ``i % 5``), saved as a state_dict
and loaded with ``--model demo --weights``; an ImageFolder of ``--classes`` folders, each the
first ``--images-per-class`` validation images of its demo class (symlinks); the demo's
settings (tau 8, k 50, 16 Gauss-Legendre steps), ``include_misclassified`` (tiled logits tie,
so the class filter would keep nothing for the copies).

Runs, in this order, each into its own output folder:

* ``local``: :func:`neurflow.ingest.executor.compute` with the local executor, in this
  process (torch uses every core of the machine);
* ``ray``: the Ray executor on a Ray instance started here with ``--ray-cpus`` CPUs (and the
  machine's GPUs), ``--cpus-per-class`` / ``--gpus-per-class`` per task.

Reported: wall time of each (Ray's start-up separately), their ratio, per-class seconds,
the nodes, and whether every class's ``circuit.json`` and ``arrays.npz`` are byte-identical
between the two, and the machine's load average before each (on a shared machine it
drifts: ``--ray-first`` runs the other order, ``--append`` keeps both). Then the per-class fixed cost that decides task vs actor: inside a warm
Ray worker, the seconds to fetch and deserialise the prepared model from the object store
(what each task pays) against the seconds to build it from its weights file (what a task
without ``ray.put`` pays, and an actor pays once), for the demo CNN and a resnet50 whose
random weights are saved to a file. ``--json PATH`` writes everything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from neurflow.circuit import CircuitConfig
from neurflow.ingest.executor import ExecutorOptions, compute, summary_lines
from neurflow.ingest.pipeline import ComputeRequest, prepare

DEMO_CONFIG = {"tau": 8, "k": 50, "steps": 16, "method": "gausslegendre"}  # neurflow demo's settings


def _workload(demo_root: Path, work: Path, n_classes: int, per_class: int) -> tuple[Path, Path]:
    """The tiled demo weights and the ImageFolder of ``n_classes`` folders."""
    state = torch.load(demo_root / "model.pt", map_location="cpu", weights_only=True)
    base = state["fc.weight"].shape[0]
    rows = torch.arange(n_classes) % base
    state["fc.weight"], state["fc.bias"] = state["fc.weight"][rows].clone(), state["fc.bias"][rows].clone()
    weights = work / f"demo{n_classes}.pt"
    torch.save(state, weights)
    val = demo_root / "world" / "val"
    names = sorted(p.name for p in val.iterdir() if p.is_dir())
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    for i in range(n_classes):
        src = val / names[i % base]
        folder = data / f"c{i:02d}-{names[i % base]}"
        folder.mkdir(parents=True)
        for f in sorted(src.iterdir())[:per_class]:
            (folder / f.name).symlink_to(f.resolve())
    return weights, data


def _artifact_bytes(outcomes) -> dict[str, bytes]:
    return {f"{o.class_index}/{f}": (o.directory / f).read_bytes() for o in outcomes if o.status == "computed" for f in ("circuit.json", "arrays.npz")}


def _timed_run(req: ComputeRequest, options: ExecutorOptions) -> tuple[float, list]:
    t0 = time.perf_counter()
    outcomes = compute(req, options, log=lambda line: print(line, file=sys.stderr, flush=True))
    return time.perf_counter() - t0, outcomes


def _overhead(ray, requests: dict[str, ComputeRequest], repeats: int = 3) -> dict[str, dict[str, float]]:
    """Per-class fixed cost in a warm worker: object-store fetch vs building the model."""

    @ray.remote(num_cpus=1)
    def fetch(refs):
        t0 = time.perf_counter()
        prep = ray.get(refs[0])
        return time.perf_counter() - t0, sum(p.numel() for p in prep.spec.module.parameters())

    @ray.remote(num_cpus=1)
    def build(req):
        t0 = time.perf_counter()
        prepare(req, device="cpu")
        return time.perf_counter() - t0

    out = {}
    for name, req in requests.items():
        ref = ray.put(prepare(req, device="cpu"))
        ray.get(build.remote(req))  # warm-up: imports in the worker
        ray.get(fetch.remote([ref]))
        fetched = [ray.get(fetch.remote([ref])) for _ in range(repeats)]
        built = [ray.get(build.remote(req)) for _ in range(repeats)]
        out[name] = {
            "parameters": int(fetched[0][1]),
            "object_store_fetch_s": round(statistics.median(t for t, _ in fetched), 4),
            "build_from_weights_file_s": round(statistics.median(built), 4),
        }
        print(f"overhead {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--images-per-class", type=int, default=20)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the Ray instance started here")
    ap.add_argument("--cpus-per-class", type=float, default=1.0)
    ap.add_argument("--gpus-per-class", type=float, default=0.0)
    ap.add_argument("--max-retries", type=int, default=2)
    ap.add_argument("--demo-root", type=Path, default=Path(".neurflow/demo"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/neurflow-bench-ray"))
    ap.add_argument("--ray-first", action="store_true", help="run Ray before local (the machine's load drifts: run both orders)")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--append", action="store_true", help="add this run to the runs already in --json")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]

    import ray

    demo_root = args.demo_root.absolute()
    if not (demo_root / "model.pt").is_file():
        raise SystemExit(f"no demo model under {demo_root}: run 'make demo' first")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    weights, data = _workload(demo_root, args.work, args.classes, args.images_per_class)

    def request(out: str) -> ComputeRequest:
        return ComputeRequest(model="demo", weights=str(weights), data=data, out=args.work / out, include_misclassified=True,
                              config=CircuitConfig(**DEMO_CONFIG), device=args.device, demo_root=demo_root)

    load: dict[str, float] = {}

    def run_local():
        load["local"] = os.getloadavg()[0]
        return _timed_run(request("local"), ExecutorOptions())

    def run_ray():
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=args.ray_cpus, include_dashboard=False, logging_level="WARNING")
        init = time.perf_counter() - t0
        load["ray"] = os.getloadavg()[0]
        options = ExecutorOptions("ray", gpus_per_class=args.gpus_per_class, cpus_per_class=args.cpus_per_class, max_retries=args.max_retries)
        return (init, *_timed_run(request("ray"), options))

    if args.ray_first:
        init_s, ray_s, remote = run_ray()
        local_s, local = run_local()
    else:
        local_s, local = run_local()
        init_s, ray_s, remote = run_ray()
    print("\n".join(summary_lines(remote)), file=sys.stderr)

    a, b = _artifact_bytes(local), _artifact_bytes(remote)
    identical = sorted(a) == sorted(b) and all(a[k] == b[k] for k in a)
    result = {
        "benchmark": "bench_ray.py",
        "environment": {
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "loadavg_1min_at_start": load_before,
            "loadavg_1min_before_each_run": {k: round(v, 2) for k, v in load.items()},
            "torch": torch.__version__,
            "ray": ray.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch_threads_local": torch.get_num_threads(),
        },
        "workload": {
            "model": "demo CNN, fc tiled", "classes": args.classes, "images_per_class": args.images_per_class,
            "config": DEMO_CONFIG, "device": args.device, "include_misclassified": True,
        },
        "order": "ray, then local" if args.ray_first else "local, then ray",
        "ray_options": {"ray_cpus": args.ray_cpus, "cpus_per_class": args.cpus_per_class, "gpus_per_class": args.gpus_per_class,
                        "max_retries": args.max_retries},
        "local_s": round(local_s, 2),
        "ray_init_s": round(init_s, 2),
        "ray_s": round(ray_s, 2),
        "ray_over_local": round(ray_s / local_s, 3),
        "statuses": {"local": sorted({o.status for o in local}), "ray": sorted({o.status for o in remote})},
        "per_class_s": {"local_mean": round(statistics.mean(o.seconds for o in local), 2),
                        "ray_mean": round(statistics.mean(o.seconds for o in remote), 2)},
        "nodes": sorted({o.node for o in remote}),
        "artifacts_identical": identical,
    }
    if not args.skip_overhead:
        resnet = args.work / "resnet50.pt"
        import torchvision

        torch.manual_seed(0)
        torch.save(torchvision.models.resnet50(weights=None).state_dict(), resnet)
        result["per_task_overhead"] = _overhead(ray, {
            "demo": request("overhead"),
            "resnet50": ComputeRequest(model="resnet50", weights=str(resnet), data=data, out=args.work / "overhead", device="cpu"),
        })
    ray.shutdown()
    print(json.dumps(result, indent=1))
    if args.json:
        runs = json.loads(args.json.read_text())["runs"] if args.append and args.json.is_file() else []
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": [*runs, result]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
