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
