"""scripts/system-deps.sh: what `make test` / `make bench` ask a non-root user for, in one line.

Run as an unprivileged user (``setpriv`` to nobody when the suite runs as root) with package lists
given through ``PATCHGATE_SYSTEM_PACKAGES``, so nothing is installed on the machine. The script runs
from a copy in a folder anyone can enter: a checkout under /root (CI's) is closed to nobody.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "system-deps.sh"
NOBODY = 65534


@pytest.fixture(scope="module")
def script() -> Iterator[Path]:
    """A copy of the script in a folder the user nobody can enter, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="patchgate-system-deps-"))
    try:
        folder.chmod(0o755)
        (folder / "scripts").mkdir(mode=0o755)
        copy = folder / "scripts" / SCRIPT.name
        shutil.copy(SCRIPT, copy)
        copy.chmod(0o755)
        yield copy
    finally:
        shutil.rmtree(folder)


def run_unprivileged(script: Path, target: str, packages: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if packages is not None:
        env["PATCHGATE_SYSTEM_PACKAGES"] = packages
    argv = [str(script), target]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("setpriv is missing: apt-get install util-linux", pytrace=False)
        argv = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/", timeout=60)


def test_missing_packages_are_named_in_one_line(script: Path) -> None:
    result = run_unprivileged(script, "test", "make:make patchgate-absent-one: patchgate-absent-two:/nonexistent")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == ("make test: missing system packages: patchgate-absent-one patchgate-absent-two; "
                             "run as root: apt-get install patchgate-absent-one patchgate-absent-two\n")


def test_a_package_is_present_by_dpkg_or_by_its_probe(script: Path) -> None:
    result = run_unprivileged(script, "venv", "make: patchgate-absent:/bin/sh patchgate-module:py:json")
    assert (result.returncode, result.stderr) == (0, "")


def test_everything_present_but_not_root_stops_for_postfix(script: Path) -> None:
    result = run_unprivileged(script, "bench", "make:make")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "make bench: must run as root (Postfix, started by the bench run, drops privileges itself)"]


def test_unknown_set_is_a_usage_error(script: Path) -> None:
    result = run_unprivileged(script, "everything")
    assert result.returncode == 2
    assert "unknown set 'everything'" in result.stderr
