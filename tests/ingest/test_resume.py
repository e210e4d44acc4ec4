"""A build killed in the middle of a transition resumes at the first unfinished one and
writes the same artifact, byte for byte, as a build that was never interrupted."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from neurflow.ingest.pipeline import transitions_dir

from .conftest import TINY

LAYERS = "fc,c3,c2,c1"  # three transitions


def _compute(data: Path, out: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``compute`` of class 0 in a child process; with ``kill_at``, the child SIGKILLs itself
    when a progress stage starting with that text begins (a real kill, mid-transition)."""
    script = textwrap.dedent(
        f"""
        import json, os, signal, sys
        from pathlib import Path
        from neurflow.circuit import CircuitConfig
        from neurflow.ingest.pipeline import ComputeRequest, compute

        stages = []

        class Bar:
            def update(self, n=1): pass
            def close(self): pass

        def progress(stage, total):
            stages.append(stage)
            if {kill_at!r} and stage.startswith({kill_at!r}):
                os.kill(os.getpid(), signal.SIGKILL)
            return Bar()

        req = ComputeRequest(model={TINY!r}, data=Path({str(data)!r}), out=Path({str(out)!r}), classes="0", layers=tuple({LAYERS!r}.split(",")),
                             include_misclassified=True, input_size=32, device="cpu", thumbnails=False,
                             config=CircuitConfig(tau=4, k=10, steps=8))
        outcomes = compute(req, progress=progress, log=lambda *_: None)
        print(json.dumps({{"stages": stages, "status": [o.status for o in outcomes], "dir": str(outcomes[0].directory)}}))
        """
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)


def test_killed_build_resumes_and_writes_the_same_bytes(tmp_path: Path, image_folder: Path) -> None:
    reference = _compute(image_folder, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    ref = json.loads(reference.stdout)
    ig_stages = [s for s in ref["stages"] if s.startswith("integrated gradients")]
    assert [s.split(":")[0] for s in ig_stages] == ["integrated gradients fc -> c3", "integrated gradients c3 -> c2", "integrated gradients c2 -> c1"]
    ref_dir = Path(ref["dir"])
    assert not transitions_dir(ref_dir).exists()  # cleared once the artifact is written

    out = tmp_path / "killed"
    killed = _compute(image_folder, out, kill_at="integrated gradients c2 -> c1")
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    art = out / ref_dir.relative_to(tmp_path / "reference")
    state = json.loads((transitions_dir(art) / "state.json").read_text())
    assert state["done"] == 2 and not art.exists()  # two transitions kept, no artifact yet

    resumed = _compute(image_folder, out)
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["status"] == ["computed"]
    assert [s.split(":")[0] for s in doc["stages"] if s.startswith("integrated gradients")] == ["integrated gradients c2 -> c1"]  # resumed
    for name in ("circuit.json", "arrays.npz"):
        assert (art / name).read_bytes() == (ref_dir / name).read_bytes(), name
    assert not transitions_dir(art).exists()


def test_a_state_of_other_inputs_is_not_resumed(tmp_path: Path, image_folder: Path) -> None:
    """A stored state whose key differs (here: another k) is ignored, and a corrupt one too."""
    from neurflow.resume import HypertreeState, TransitionStore

    store = TransitionStore(tmp_path / "s", "key-a")
    store.save(HypertreeState(1, (3, 5), (), (), ()))
    assert store.load() == HypertreeState(1, (3, 5), (), (), ())
    assert TransitionStore(tmp_path / "s", "key-b").load() is None
    (tmp_path / "s" / "state.npz").write_bytes(b"tampered")
    assert store.load() is None
    store.clear()
    assert not (tmp_path / "s").exists() and store.load() is None
