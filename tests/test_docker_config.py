"""docker/: the Compose file resolves, publishes Neo4j on 127.0.0.1 only, and commits no password.

``docker compose config`` needs only the docker client with its Compose v2 plugin
(no engine); the tests that run it are skipped where that is missing.
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


def _compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NEURFLOW_", "NEO4J_", "COMPOSE_"))}
    environ.update(env)
    return subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--format", "json"],
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
