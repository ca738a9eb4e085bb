"""Where the tests find Helm: the binary scripts/helm/fetch.sh builds (make test runs it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = ROOT / "scripts" / "helm" / "fetch.sh"
CHART = ROOT / "deploy" / "helm" / "patchgate"
PRODUCTION_VALUES = CHART / "values-production.yaml"


def pinned_version() -> str:
    """The version fetch.sh builds by default (one place to change it)."""
    match = re.search(r'HELM_VERSION:-(v[0-9.]+)', FETCH_SCRIPT.read_text())
    assert match, f"{FETCH_SCRIPT} names no default HELM_VERSION"
    return match.group(1)


def helm_path() -> Path:
    """The built helm; a missing one fails the test with one line saying how to get it."""
    binary = ROOT / ".cache" / "helm" / pinned_version() / "helm"
    if not binary.is_file():
        pytest.fail(f"helm is missing ({binary.relative_to(ROOT)}): run scripts/helm/fetch.sh "
                    "(make test does; it builds it once with Go from the module proxy)", pytrace=False)
    return binary


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_path()), *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": "/tmp/helm-cache",
                               "HELM_CONFIG_HOME": "/tmp/helm-config", "HELM_DATA_HOME": "/tmp/helm-data"})


def render(*values: Path, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The chart's objects as ``helm template`` renders them with these values files."""
    args = ["template", "pg", str(CHART), *[f"--values={v}" for v in values], *[f"--set={s}" for s in sets]]
    result = run_helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
