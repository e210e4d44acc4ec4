"""The Ray executor on a local cluster: the same bytes as the local executor, a killed worker
retried, a failing class reported while the others complete, resources as requested.

One Ray instance (2 CPUs, 1 logical GPU: Ray schedules ``num_gpus`` without a real GPU) is
started for the module and shared by its tests (Ray's "Tips for testing Ray programs").
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from neurflow.circuit import CircuitConfig
from neurflow.ingest.errors import InputError
from neurflow.ingest.executor import ExecutorOptions, compute, iter_compute, summary_lines
from neurflow.ingest.pipeline import ClassOutcome, ComputeRequest

from .conftest import TINY

ARTIFACT_FILES = ("circuit.json", "arrays.npz")


def _request(data: Path, out: Path, model: str = TINY, classes: str = "all", device: str = "cpu") -> ComputeRequest:
    return ComputeRequest(model=model, data=data, out=out, classes=classes, layers=("fc", "c3", "c2"), include_misclassified=True,
                          input_size=32, device=device, config=CircuitConfig(tau=4, k=10, steps=8))


def _bytes(outcomes: list[ClassOutcome]) -> dict[str, dict[str, bytes]]:
    return {o.class_name: {f: (o.directory / f).read_bytes() for f in ARTIFACT_FILES} for o in outcomes}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[object]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> list[ClassOutcome]:
    """The three tiny classes computed by the local executor."""
    outcomes = compute(_request(image_folder, tmp_path_factory.mktemp("local")), log=lambda _: None)
    assert [o.status for o in outcomes] == ["computed"] * 3
    return outcomes


def test_ray_writes_the_same_bytes_as_local_and_streams_classes(ray_cluster, local_reference, image_folder: Path, tmp_path: Path) -> None:
    seen: list[str] = []
    lines: list[str] = []
    out = tmp_path / "ray"
    outcomes = compute(_request(image_folder, out), ExecutorOptions("ray"), log=lines.append,
                       on_class=lambda o: seen.append(o.class_name))
    assert sorted(o.status for o in outcomes) == ["computed"] * 3
    assert seen == [o.class_name for o in outcomes]  # the callback got each class as it completed
    assert _bytes(outcomes) == _bytes(local_reference)
    node = ray_cluster.get_runtime_context().get_node_id()[:8]
    assert all(node in o.node and o.resources == {"CPU": 1.0} for o in outcomes), [(o.node, o.resources) for o in outcomes]
    assert sum(": computed (" in line for line in lines) == 3  # one line per completed class
    summary = summary_lines(outcomes)
    assert summary[0] == "3 computed, 0 up to date, 0 failed"
    assert all(node in line for line in summary[1:]) and len(summary) == 4

    again = list(iter_compute(_request(image_folder, out), ExecutorOptions("ray"), log=lambda _: None))
    assert [o.status for o in again] == ["skipped"] * 3  # a re-run resumes: nothing is submitted


def _tripwire_model(tmp_path: Path, marker: Path) -> str:
    """The tiny model behind a layer that SIGKILLs its own process the first time it runs in
    any process but this test's (once: an O_EXCL marker file), as an OOM kill would."""
    path = tmp_path / "tripwire_model.py"
    path.write_text(textwrap.dedent(f"""
        import os, signal
        from collections import OrderedDict
        import torch
        from torch import nn

        MARKER, DRIVER_PID = {str(marker)!r}, {os.getpid()}

        class Tripwire(nn.Module):
            def forward(self, x):
                if os.getpid() != DRIVER_PID:
                    try:
                        os.close(os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    except FileExistsError:
                        return x
                    os.kill(os.getpid(), signal.SIGKILL)
                return x

        def make():
            torch.manual_seed(0)
            return nn.Sequential(OrderedDict(
                trip=Tripwire(),
                c1=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
                c2=nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU()),
                c3=nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU()),
                pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(16, 3)))
    """))
    return f"{path}:make"


def test_a_killed_worker_is_retried_and_its_class_completes(ray_cluster, image_folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "killed-once"
    model = _tripwire_model(tmp_path, marker)
    reference = compute(_request(image_folder, tmp_path / "local", model, "alpha,beta"), log=lambda _: None)
    assert not marker.exists()  # the local executor runs in this process: never killed

    outcomes = compute(_request(image_folder, tmp_path / "ray", model, "alpha,beta"), ExecutorOptions("ray", max_retries=1), log=lambda _: None)
    assert marker.exists()  # one worker did die
    assert sorted(o.status for o in outcomes) == ["computed", "computed"], [o.message for o in outcomes]
    assert _bytes(outcomes) == _bytes(reference)


def test_a_worker_killed_with_no_retries_left_fails_its_class_only(ray_cluster, image_folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "killed-once"
    model = _tripwire_model(tmp_path, marker)
    outcomes = compute(_request(image_folder, tmp_path / "ray", model, "alpha,beta"), ExecutorOptions("ray", max_retries=0), log=lambda _: None)
    failed = [o for o in outcomes if o.status == "failed"]
    assert len(failed) == 1 and [o.status for o in outcomes if o is not failed[0]] == ["computed"]
    assert "WorkerCrashedError" in failed[0].message and "after 1 attempt(s)" in failed[0].message, failed[0].message
    assert not (failed[0].directory / "circuit.json").exists()  # nothing half-written

    # a re-run computes only the lost class
    rerun = compute(_request(image_folder, tmp_path / "ray", model, "alpha,beta"), ExecutorOptions("ray"), log=lambda _: None)
    assert {o.class_name: o.status for o in rerun} == {failed[0].class_name: "computed", ({"alpha", "beta"} - {failed[0].class_name}).pop(): "skipped"}


def test_a_failing_class_is_reported_while_the_others_complete(ray_cluster, image_folder: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    for f in (data / "gamma").iterdir():
        f.write_bytes(b"not an image")
    lines: list[str] = []
    outcomes = compute(_request(data, tmp_path / "ray"), ExecutorOptions("ray"), log=lines.append)
    status = {o.class_name: o.status for o in outcomes}
    assert status == {"alpha": "computed", "beta": "computed", "gamma": "failed"}
    gamma = next(o for o in outcomes if o.class_name == "gamma")
    assert "has no readable images" in gamma.message
    assert any("gamma: FAILED" in line and "has no readable images" in line for line in lines)


def test_fractional_gpus_are_reserved_per_class(ray_cluster, image_folder: Path, tmp_path: Path) -> None:
    outcomes = compute(_request(image_folder, tmp_path / "ray", classes="alpha"), ExecutorOptions("ray", gpus_per_class=0.5, cpus_per_class=1), log=lambda _: None)
    assert [o.status for o in outcomes] == ["computed"]
    assert outcomes[0].resources == {"CPU": 1.0, "GPU": 0.5}


def test_a_request_no_node_can_hold_is_refused(ray_cluster, image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no Ray node has 1 CPU and 2 GPU"):
        compute(_request(image_folder, tmp_path / "ray"), ExecutorOptions("ray", gpus_per_class=2))
    with pytest.raises(InputError, match="needs --gpus-per-class > 0"):
        compute(_request(image_folder, tmp_path / "ray", device="cuda"), ExecutorOptions("ray"))
    assert not (tmp_path / "ray").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"executor": "dask"}, "unknown executor 'dask'; use local or ray"),
        ({"executor": "ray", "gpus_per_class": -1}, "must be >= 0"),
        ({"executor": "ray", "gpus_per_class": 1.5}, "above 1 must be a whole number"),
        ({"executor": "ray", "max_retries": -1}, "--max-retries must be >= 0"),
        ({"gpus_per_class": 0.5}, "need --executor ray"),
        ({"ray_address": "auto"}, "need --executor ray"),
    ],
)
def test_bad_executor_options(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ExecutorOptions(**kwargs)


def test_ray_missing_is_an_input_error(monkeypatch: pytest.MonkeyPatch, image_folder: Path, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(InputError, match=r"pip install 'neurflow\[ray\]'"):
        compute(_request(image_folder, tmp_path), ExecutorOptions("ray"))


def test_a_duplicated_task_waits_for_the_first_then_skips(ray_cluster, local_reference, image_folder: Path, tmp_path: Path) -> None:
    """Two tasks of one class at once (a retry while the first attempt still runs): the
    per-class lock lets one compute; the other finds its artifact up to date."""
    from neurflow.ingest.executor import _remote
    from neurflow.ingest.pipeline import prepare

    prep = ray_cluster.put(prepare(_request(image_folder, tmp_path / "ray", classes="alpha"), device="cpu"))
    first, second = (_remote(ray_cluster).options(num_cpus=1).remote(prep, 0) for _ in range(2))
    outcomes = [o for o, _ in ray_cluster.get([first, second])]
    assert sorted(o.status for o in outcomes) == ["computed", "skipped"]
    assert _bytes([o for o in outcomes if o.status == "computed"]) == _bytes([o for o in local_reference if o.class_name == "alpha"])


def test_cli_compute_with_the_ray_executor(ray_cluster, local_reference, image_folder: Path, tmp_path: Path) -> None:
    """`neurflow compute --executor ray` (the cluster this process initialised is used as it
    is) writes the local executor's bytes and names the node of every class."""
    from click.testing import CliRunner

    from neurflow.ingest.cli import main
    from neurflow.ingest.pipeline import find_artifacts

    from .conftest import COMPUTE_ARGS

    out = tmp_path / "cli"
    result = CliRunner().invoke(main, ["compute", "--data", str(image_folder), "--out", str(out), *COMPUTE_ARGS,
                                       "--executor", "ray", "--cpus-per-class", "1", "--max-retries", "1"])
    assert result.exit_code == 0, result.output
    assert "3 class(es) computed" in result.output
    node = ray_cluster.get_runtime_context().get_node_id()[:8]
    assert sum(node in line for line in result.stderr.splitlines()) >= 3
    dirs = {d.name: d for d in find_artifacts([out])}
    assert {o.directory.name: {f: (dirs[o.directory.name] / f).read_bytes() for f in ARTIFACT_FILES} for o in local_reference} == \
        {o.directory.name: {f: (o.directory / f).read_bytes() for f in ARTIFACT_FILES} for o in local_reference}
    result = CliRunner().invoke(main, ["compute", "--data", str(image_folder), "--out", str(out), *COMPUTE_ARGS, "--gpus-per-class", "0.5"])
    assert result.exit_code == 2 and "need --executor ray" in result.output
