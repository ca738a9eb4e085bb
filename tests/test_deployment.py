"""Deployment files: docker-compose.yml (and the scale-out override) are valid and complete."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither docker-compose nor the docker compose plugin is installed: "
                "`apt-get install docker-compose` (no engine is needed to check the files)", pytrace=False)


@pytest.mark.parametrize("files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.scale.yml"]])
def test_compose_config_is_valid(files: list[str]) -> None:
    args = [part for name in files for part in ("-f", str(ROOT / name))]
    result = subprocess.run([*_compose(), *args, "config"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for service in ("kafka:", "redis:", "worker:"):
        assert service in result.stdout
    assert "PATCHGATE_KAFKA_BOOTSTRAP: kafka:9092" in result.stdout
    if "docker-compose.scale.yml" in files:
        assert "replicas: 3" in result.stdout and "PATCHGATE_METADATA_PARTITIONS: '12'" in result.stdout


def _dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into build stages."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages: list[list[str]] = []
    for line in instructions:
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_dockerfile_builds_a_wheel_and_installs_it_in_a_slim_non_root_runtime() -> None:
    from processors.settings import Settings

    builder, runtime = _dockerfile_stages()
    assert builder[0].endswith(" AS builder") and any("pip wheel" in line for line in builder)
    assert runtime[0] == "FROM python:3.11-slim"
    installs = [line for line in runtime if "pip install" in line]
    assert len(installs) == 1 and " -e " not in installs[0] and "/dist/*.whl" in installs[0]
    assert not any("PATCHGATE_SCHEMAS_DIR" in line or line.startswith("COPY processors") for line in runtime)
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    exposed = {int(port) for line in runtime if line.startswith("EXPOSE ") for port in line.split()[1:]}
    defaults = Settings()
    assert exposed == {defaults.metrics_port, defaults.web_port, 8080}


def test_dockerfile_healthcheck_asks_the_metrics_endpoint_with_python() -> None:
    import json

    _, runtime = _dockerfile_stages()
    (check,) = [line for line in runtime if line.startswith("HEALTHCHECK ")]
    argv = json.loads(check[check.index(" CMD ") + 5:])
    assert argv[:2] == ["python", "-c"] and "/metrics" in argv[2] and "PATCHGATE_METRICS_PORT" in argv[2]
    compile(argv[2], "healthcheck", "exec")


def test_dockerignore_keeps_the_build_context_to_the_package_sources() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".cache", "tests"} <= ignored
    assert not ignored & {"processors", "edge", "schemas", "pyproject.toml", "README.md"}
