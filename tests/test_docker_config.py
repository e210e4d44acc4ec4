"""docker/: the Compose file resolves, publishes Neo4j on 127.0.0.1 only, and commits no password;
the optional Ray services (profile ``ray``) form a head and a GPU worker that share /work.

``docker compose config`` needs only the docker client with its Compose v2 plugin
(no engine); the tests that run it are skipped where that is missing. The Ray services are
also checked from the YAML itself (PyYAML, which Ray installs), so they are checked here too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker" / "docker-compose.yml"
TEST_PASSWORD = "compose-check-only"


def _compose_available() -> str | None:
    """None if ``docker compose`` works, else why not."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    try:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"'docker compose version' failed: {exc}"
    if probe.returncode != 0:
        return "the docker client has no Compose v2 plugin ('docker compose' is unknown)"
    return None


_NO_COMPOSE = _compose_available()
needs_compose = pytest.mark.skipif(_NO_COMPOSE is not None, reason=_NO_COMPOSE or "")


def _compose_config(*profiles: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NEURFLOW_", "NEO4J_", "COMPOSE_", "RAY_"))}
    environ.update(env)
    flags = [arg for p in profiles for arg in ("--profile", p)]
    return subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), *flags, "config", "--format", "json"],
        capture_output=True, text=True, cwd=ROOT, env=environ, timeout=60,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = _compose_config(NEURFLOW_PASSWORD=TEST_PASSWORD)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _ports(service: dict[str, Any]) -> set[tuple[str, int, int]]:
    return {(p.get("host_ip", ""), int(p["published"]), int(p["target"])) for p in service.get("ports", [])}


@needs_compose
def test_services_and_ports(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == {"neo4j", "neurflow"}
    neo4j = services["neo4j"]
    assert neo4j["image"] == "neo4j:5"
    assert _ports(neo4j) == {("127.0.0.1", 7474, 7474), ("127.0.0.1", 7687, 7687)}
    env = neo4j["environment"]
    assert env["NEO4J_AUTH"] == f"neo4j/{TEST_PASSWORD}"
    assert env["NEO4J_server_memory_heap_max__size"] and env["NEO4J_server_memory_heap_initial__size"]
    assert any(v.get("target") == "/data" for v in neo4j["volumes"])


@needs_compose
def test_app_service(config: dict[str, Any]) -> None:
    app = config["services"]["neurflow"]
    assert Path(app["build"]["context"]).resolve() == ROOT
    assert app["build"]["dockerfile"].endswith("Dockerfile")
    assert app["environment"]["NEURFLOW_URI"] == "bolt://neo4j:7687"
    assert app["environment"]["NEURFLOW_PASSWORD"] == TEST_PASSWORD
    assert not _ports(app)  # the app publishes nothing


@needs_compose
def test_config_requires_a_password() -> None:
    result = _compose_config()
    assert result.returncode != 0
    assert "set NEURFLOW_PASSWORD" in result.stderr


def test_compose_file_commits_no_password_and_binds_loopback() -> None:
    text = COMPOSE_FILE.read_text()
    assert "${NEURFLOW_PASSWORD:?set NEURFLOW_PASSWORD}" in text
    assert not re.search(r"NEURFLOW_PASSWORD:-", text), "no default password"
    assert not re.search(r"NEO4J_AUTH:\s*[\"']?neo4j/[^$]", text), "no literal password"
    published = re.findall(r"^\s*-\s*\"?([\d.]*:?\d+:\d+)", text, flags=re.M)
    assert published and all(p.startswith("127.0.0.1:") for p in published), published


def test_dockerfile_installs_the_project_with_the_cli_entrypoint() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, flags=re.M)
    assert re.search(r"^RUN pip install \.", text, flags=re.M)
    assert 'ENTRYPOINT ["neurflow"]' in text
    assert "NEURFLOW_URI=bolt://neo4j:7687" in text


RAY_SERVICES = ("ray-head", "ray-gpu-worker")


@needs_compose
def test_ray_profile_resolves_to_a_head_and_a_gpu_worker() -> None:
    result = _compose_config("ray", NEURFLOW_PASSWORD=TEST_PASSWORD, RAY_AUTH_TOKEN="token-check-only")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(RAY_SERVICES) <= set(services)
    devices = services["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["ray-head"]["environment"]["RAY_AUTH_TOKEN"] == "token-check-only"
    assert _ports(services["ray-head"]) == {("127.0.0.1", 8265, 8265), ("127.0.0.1", 10001, 10001)}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The Compose file as YAML (no interpolation)."""
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_ray_services_are_optional_and_form_one_cluster(raw: dict[str, Any]) -> None:
    services = raw["services"]
    for name in ("neo4j", "neurflow"):
        assert "profiles" not in services[name]  # the Neo4j workflow is unchanged
    for name in RAY_SERVICES:
        assert services[name]["profiles"] == ["ray"]
        assert services[name]["entrypoint"] == ["ray"] and services[name]["command"][0] == "start"
        assert "--block" in services[name]["command"]  # the container lives as long as the node
        assert services[name].get("shm_size")  # the object store lives in /dev/shm
    head, worker = services["ray-head"]["command"], services["ray-gpu-worker"]["command"]
    assert "--head" in head and "--port=6379" in head and "--num-gpus=0" in head
    assert "--address=ray-head:6379" in worker
    # the image: the neurflow service's image plus Ray
    build = services["ray-head"]["build"]
    assert build["additional_contexts"] == {"neurflow": "service:neurflow"}
    assert build["dockerfile_inline"].startswith("FROM neurflow\n") and 'pip install "ray[default]' in build["dockerfile_inline"]
    assert services["ray-gpu-worker"]["build"] == build and services["ray-gpu-worker"]["image"] == services["ray-head"]["image"]


def test_ray_gpu_worker_reserves_gpus(raw: dict[str, Any]) -> None:
    devices = raw["services"]["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert "deploy" not in raw["services"]["ray-head"]


def test_every_ray_node_sees_the_same_work_folder_and_only_the_driver_the_password(raw: dict[str, Any]) -> None:
    services = raw["services"]
    mounts = {name: [v for v in services[name]["volumes"] if v.endswith(":/work")] for name in ("neurflow", *RAY_SERVICES)}
    assert len({tuple(m) for m in mounts.values()}) == 1 and len(mounts["neurflow"]) == 1, mounts
    assert services["ray-head"]["environment"]["NEURFLOW_PASSWORD"] == "${NEURFLOW_PASSWORD:?set NEURFLOW_PASSWORD}"
    assert services["ray-head"]["environment"]["NEURFLOW_URI"] == "bolt://neo4j:7687"
    worker_env = services["ray-gpu-worker"]["environment"]
    assert not any(k.startswith("NEURFLOW_") for k in worker_env)  # workers never write to the graph
    assert worker_env["RAY_AUTH_MODE"] == "token" and worker_env["RAY_AUTH_TOKEN"] == services["ray-head"]["environment"]["RAY_AUTH_TOKEN"]
