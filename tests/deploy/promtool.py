"""Where the tests find promtool: the binary scripts/promtool/fetch.sh builds (make test runs it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = ROOT / "scripts" / "promtool" / "fetch.sh"


def pinned_version() -> str:
    """The version fetch.sh builds by default (one place to change it)."""
    match = re.search(r'PROMTOOL_VERSION:-(v[0-9.]+)', FETCH_SCRIPT.read_text())
    assert match, f"{FETCH_SCRIPT} names no default PROMTOOL_VERSION"
    return match.group(1)


def promtool_path() -> Path:
    """The built promtool; a missing one fails the test with one line saying how to get it."""
    binary = ROOT / ".cache" / "promtool" / pinned_version() / "promtool"
    if not binary.is_file():
        pytest.fail(f"promtool is missing ({binary.relative_to(ROOT)}): run scripts/promtool/fetch.sh "
                    "(make test does; it builds it once with Go from the module proxy)", pytrace=False)
    return binary


def run_promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool_path()), *args], capture_output=True, text=True, cwd=cwd, timeout=120)
