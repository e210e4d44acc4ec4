"""Peak memory of ``neurflow debug`` against the size of the data folder (not a test).

The debugger streams the folder once to find true and false positives, then loads only the
images each class's tests need (at most ``--max-tp`` / ``--max-fp``). This script runs
``neurflow debug --no-graph`` on the demo (world, model and circuits from ``make demo``, or
built here) over two data folders, the demo's ``val`` split and the same images replicated
10x (hard links), each run in its own process, and prints wall time and peak RSS (the
child's ``ru_maxrss``) side by side with their ratios.

    .venv/bin/python benchmarks/bench_debug.py [--root .neurflow/demo] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _replicate(src: Path, dst: Path, times: int) -> int:
    """``dst`` holds every image of ``src`` ``times`` times (hard links, new names)."""
    n = 0
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir()):
            for r in range(times):
                target = dst / cls.name / (f.name if r == 0 else f"{f.stem}_r{r}{f.suffix}")
                try:
                    os.link(f, target)
                except OSError:
                    shutil.copyfile(f, target)
                n += 1
    return n


def _run(root: Path, data: Path, caps: list[str]) -> dict:
    """One ``neurflow debug`` in a child process: wall seconds and the child's peak RSS."""
    args = [str(Path(sys.executable).with_name("neurflow")), "debug", "--model", "demo", "--demo-root", str(root), "--data", str(data),
            "--out", str(root / "artifacts"), "--no-graph", "--format", "json", "--device", "cpu", "--quiet", *caps]
    t0 = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"neurflow debug failed ({done.returncode}):\n{done.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    doc = json.loads(done.stdout)
    return {"seconds": seconds, "peak_rss_mib": peak / 1024, "classes": {d["class"]["name"]: {"verdict": d["verdict"], "n_tp": d["n_tp"], "n_fp": d["n_fp"]} for d in doc}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(".neurflow/demo"), help="demo folder (built if missing)")
    ap.add_argument("--times", type=int, default=10, help="replication factor of the large folder")
    ap.add_argument("--max-tp", type=int, default=100)
    ap.add_argument("--max-fp", type=int, default=50)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from neurflow.ingest.cli.demo import demo_request
    from neurflow.ingest.demo.model import ensure_demo
    from neurflow.ingest.pipeline import compute

    ensure_demo(args.root, quiet=True)
    compute(demo_request(args.root), log=lambda *_: None)
    small = args.root / "world" / "val"
    caps = ["--max-tp", str(args.max_tp), "--max-fp", str(args.max_fp)]
    with tempfile.TemporaryDirectory() as tmp:
        large = Path(tmp) / "val_x"
        n_small = sum(1 for _ in small.rglob("*.png"))
        n_large = _replicate(small, large, args.times)
        # each run in a fresh process tree: RUSAGE_CHILDREN keeps the maximum over all children
        small_run = _fresh(args.root, small, caps)
        big = _fresh(args.root, large, caps)
    rows = [("1x", n_small, small_run), (f"{args.times}x", n_large, big)]
    print(f"{'folder':>6} {'images':>7} {'wall s':>7} {'peak RSS MiB':>13}  classes (verdict, TP, FP)")
    for name, n, r in rows:
        cls = "; ".join(f"{k}: {v['verdict']} {v['n_tp']}/{v['n_fp']}" for k, v in r["classes"].items())
        print(f"{name:>6} {n:>7} {r['seconds']:>7.1f} {r['peak_rss_mib']:>13.0f}  {cls}")
    ratio_rss = big["peak_rss_mib"] / small_run["peak_rss_mib"]
    ratio_t = big["seconds"] / small_run["seconds"]
    print(f"ratio {args.times}x / 1x: images {n_large / n_small:.1f}, peak RSS {ratio_rss:.2f}, wall time {ratio_t:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"caps": caps, "runs": {name: {"images": n, **r} for name, n, r in rows},
                                         "ratio_peak_rss": ratio_rss, "ratio_wall": ratio_t}, indent=1) + "\n")


def _fresh(root: Path, data: Path, caps: list[str]) -> dict:
    """Like :func:`_run`, measured in a grandchild so its peak is its own."""
    code = (
        "import json, sys; sys.path.insert(0, %r); import bench_debug as b; from pathlib import Path; "
        "print(json.dumps(b._run(Path(%r), Path(%r), %r)))" % (str(Path(__file__).parent), str(root), str(data), caps)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout)


if __name__ == "__main__":
    main()
