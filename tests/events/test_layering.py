"""processors/events is pure: its modules import no client of a network service."""

from __future__ import annotations

import ast
from pathlib import Path

EVENTS = Path(__file__).resolve().parents[2] / "processors" / "events"
IO_PACKAGES = {"aiohttp", "aiokafka", "confluent_kafka", "faust", "redis", "socket", "asyncio", "requests"}
ALLOWED_PROJECT = ("processors.contracts", "processors.errors", "processors.events")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_events_import_no_io_and_only_pure_project_modules() -> None:
    files = sorted(EVENTS.glob("*.py"))
    assert len(files) >= 7
    for path in files:
        for module in imported_modules(path):
            root = module.split(".")[0]
            assert root not in IO_PACKAGES, f"{path.name} imports {module}"
            if root in {"processors", "edge"}:
                assert module.startswith(ALLOWED_PROJECT), f"{path.name} imports {module}"
