"""processors/events is pure: its modules import no client of a network service, and of patchgate
only the contracts, the error root and each other."""

from __future__ import annotations

import ast

from tests.test_layering import PACKAGE, imported_modules, inside

EVENTS = PACKAGE / "events"
IO_PACKAGES = ("aiohttp", "aiokafka", "asyncio", "confluent_kafka", "faust", "redis", "requests", "socket")
ALLOWED_PROJECT = ("processors.contracts", "processors.errors", "processors.events")


def test_events_import_no_io_and_only_pure_project_modules() -> None:
    files = sorted(EVENTS.glob("*.py"))
    assert len(files) >= 7
    for path in files:
        for line, module in imported_modules(ast.parse(path.read_text(), str(path))):
            where = f"{path.name}:{line} imports {module}"
            assert not any(inside(module, family) for family in IO_PACKAGES), where
            if inside(module, "processors") or inside(module, "edge"):
                assert any(inside(module, allowed) for allowed in ALLOWED_PROJECT), where


def test_the_check_would_see_a_forbidden_import() -> None:
    tree = ast.parse("from processors.worker.output import KafkaOutput\nimport redis\n")
    modules = [module for _, module in imported_modules(tree)]
    assert modules == ["processors.worker.output", "redis"]
    assert not any(inside(modules[0], allowed) for allowed in ALLOWED_PROJECT)
