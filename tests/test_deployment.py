"""Deployment files: docker-compose.yml (and the scale-out override) are valid and complete.

The compose file is checked with ``docker-compose config`` (no engine needed, none runs here): every
service of the pipeline is there, uses settings patchgate reads, and Prometheus scrapes each
component's metrics port under the job names the alert rules select.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"kafka", "redis", "worker", "api", "notify", "edge", "prometheus", "grafana"}


def _compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither docker-compose nor the docker compose plugin is installed: "
                "`apt-get install docker-compose` (no engine is needed to check the files)", pytrace=False)


@cache
def compose_config(*files: str) -> dict[str, Any]:
    """``docker-compose config`` of ``files``: the merged, validated model."""
    args = [part for name in files for part in ("-f", str(ROOT / name))]
    result = subprocess.run([*_compose(), *args, "config"], capture_output=True, text=True, cwd=ROOT,
                            env={k: v for k, v in os.environ.items() if not k.startswith("PATCHGATE_")})
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def services(*files: str) -> dict[str, dict[str, Any]]:
    return compose_config(*files)["services"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.scale.yml"]])
def test_compose_config_is_valid(files: list[str]) -> None:
    found = services(*files)
    assert set(found) == SERVICES
    assert found["worker"]["environment"]["PATCHGATE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    if "docker-compose.scale.yml" in files:
        assert found["worker"]["deploy"]["replicas"] == 3
        assert found["worker"]["environment"]["PATCHGATE_METADATA_PARTITIONS"] == "12"
        assert found["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == "12"


def patchgate_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in services("docker-compose.yml").items()
            if service.get("image") == "patchgate:local"}


def test_every_component_runs_from_the_patchgate_image_with_its_command() -> None:
    commands = {name: service["command"] for name, service in patchgate_services().items()}
    assert commands == {"worker": ["worker"], "api": ["api"], "notify": ["notify"], "edge": ["edge", "milter"]}
    for name, service in patchgate_services().items():
        assert service["build"]["context"] == str(ROOT), name
        assert service["restart"] == "unless-stopped", name
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name
        bootstrap = service["environment"].get("PATCHGATE_KAFKA_BOOTSTRAP") or \
            service["environment"].get("PATCHGATE_EDGE_KAFKA_BOOTSTRAP")
        assert bootstrap == "kafka:9092", name
    for name in ("worker", "api", "notify"):
        assert patchgate_services()[name]["environment"]["PATCHGATE_REDIS_URL"] == "redis://redis:6379/0", name


def known_setting_names() -> set[str]:
    """Every variable a component's settings object reads (deprecated names excluded)."""
    from edge.settings import EdgeSettings
    from processors.api.settings import ApiSettings
    from processors.notify.settings import NotifySettings
    from processors.settings import Settings, env_name

    classes = (Settings, ApiSettings, NotifySettings, EdgeSettings)
    # the API's tokens are a secret read by processors/api/auth.py itself, never part of a settings repr
    return {env_name(field.name) for cls in classes for field in dataclasses.fields(cls)} | {"PATCHGATE_API_TOKENS"}


def test_the_compose_file_sets_only_variables_patchgate_reads() -> None:
    used = {variable for service in patchgate_services().values() for variable in service["environment"]}
    assert used - known_setting_names() == set()
    assert "PATCHGATE_MADE_UP" not in known_setting_names()


def test_the_compose_file_shows_how_to_mount_a_kafka_properties_file() -> None:
    lines = (ROOT / "docker-compose.yml").read_text().splitlines()
    example = "\n".join(line[6:] for line in lines if line.startswith("  #   "))  # under x-patchgate-env
    service = yaml.safe_load(example)  # the commented example, as the service keys it would be
    (variable, path), = service["environment"].items()
    source, target, mode = service["volumes"][0].split(":")
    assert variable == "PATCHGATE_KAFKA_CONFIG" and variable in known_setting_names()
    assert path.startswith(target) and mode == "ro" and source.startswith("./")


def test_notify_is_health_checked_on_its_probe_port() -> None:
    notify = patchgate_services()["notify"]
    argv = notify["healthcheck"]["test"]
    assert f"127.0.0.1:{notify['environment']['PATCHGATE_NOTIFY_PROBE_PORT']}/livez" in argv[-1]


def mounted_files(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host file, for the service's read-only bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, mode = volume.split(":")
        assert mode == "ro" and Path(source).is_file(), volume
        mounts[target] = Path(source)
    return mounts


def test_the_mounted_edge_and_notify_configurations_load() -> None:
    from edge.config import load_config
    from processors.notify.config import load_notify_config

    edge, notify = patchgate_services()["edge"], patchgate_services()["notify"]
    load_config(str(mounted_files(edge)[edge["environment"]["PATCHGATE_EDGE_CONFIG"]]))
    load_notify_config(mounted_files(notify)[notify["environment"]["PATCHGATE_NOTIFY_CONFIG"]])


def metrics_endpoints() -> dict[str, str]:
    """Scrape job -> the compose service:port where that component serves /metrics."""
    env = {name: service["environment"] for name, service in patchgate_services().items()}
    assert env["worker"]["PATCHGATE_METRICS_BIND"] == "0.0.0.0"
    assert env["edge"]["PATCHGATE_EDGE_METRICS_BIND"] == "0.0.0.0"
    assert env["api"]["PATCHGATE_API_BIND"] == "0.0.0.0"  # /metrics is one of the API's routes
    assert env["notify"]["PATCHGATE_NOTIFY_PROBE_BIND"] == "0.0.0.0"  # /metrics next to its probes
    return {"patchgate-worker": f"worker:{env['worker']['PATCHGATE_METRICS_PORT']}",
            "patchgate-api": f"api:{env['api']['PATCHGATE_API_PORT']}",
            "patchgate-notify": f"notify:{env['notify']['PATCHGATE_NOTIFY_PROBE_PORT']}",
            "patchgate-edge": f"edge:{env['edge']['PATCHGATE_EDGE_METRICS_PORT']}"}


def test_prometheus_scrapes_every_components_metrics_port_and_loads_the_alert_rules() -> None:
    prometheus = services("docker-compose.yml")["prometheus"]
    mounts = mounted_files(prometheus)
    (config_flag,) = [arg for arg in prometheus["command"] if arg.startswith("--config.file=")]
    config = yaml.safe_load(mounts[config_flag.split("=", 1)[1]].read_text())
    scraped = {job["job_name"]: [target for static in job["static_configs"] for target in static["targets"]]
               for job in config["scrape_configs"]}
    assert scraped == {job: [endpoint] for job, endpoint in metrics_endpoints().items()}
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in config["scrape_configs"])
    assert [mounts[path] for path in config["rule_files"]] == [ROOT / "deploy" / "prometheus" / "alerts.yml"]


def test_the_alert_rules_select_the_scrape_jobs() -> None:
    rules = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    exact = set(re.findall(r'job="([^"]+)"', rules))
    assert exact and exact <= set(metrics_endpoints())


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


def test_dockerfile_healthcheck_asks_the_workers_liveness_probe_with_python() -> None:
    import json

    _, runtime = _dockerfile_stages()
    (check,) = [line for line in runtime if line.startswith("HEALTHCHECK ")]
    argv = json.loads(check[check.index(" CMD ") + 5:])
    assert argv[:2] == ["python", "-c"] and "PATCHGATE_METRICS_PORT" in argv[2]  # where the worker's probes are
    assert "'/livez'" in argv[2] and "/metrics" not in argv[2] and "/readyz" not in argv[2]
    compile(argv[2], "healthcheck", "exec")


def test_dockerignore_keeps_the_build_context_to_the_package_sources() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".cache", "tests"} <= ignored
    assert not ignored & {"processors", "edge", "schemas", "pyproject.toml", "README.md"}


def test_grafana_shows_the_dashboard_from_the_compose_prometheus() -> None:
    mounts = mounted_files(services("docker-compose.yml")["grafana"])
    (sources,) = [path for target, path in mounts.items() if "/provisioning/datasources/" in target]
    (source,) = yaml.safe_load(sources.read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090" and source["isDefault"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services("docker-compose.yml")["prometheus"]["command"]
    (boards,) = [path for target, path in mounts.items() if "/provisioning/dashboards/" in target]
    (provider,) = yaml.safe_load(boards.read_text())["providers"]
    folder = provider["options"]["path"]
    assert mounts[f"{folder}/patchgate.json"] == ROOT / "deploy" / "grafana" / "patchgate.json"
