"""Import layering of ``processors``, checked on the source (AST), no imports executed.

Rules: only the state package talks to Redis (``processors.state``), and the dev services that start
Redis servers (``processors.devservices``). Everything else reaches patchgate's state through
:class:`processors.state.protocol.Store`. Only the Kafka package (``processors.kafka``) imports the
Kafka client libraries (Faust's aiokafka transport in the worker's app wiring excepted).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "processors"

# module family -> packages (dotted prefixes) that may import it
ALLOWED_IMPORTERS = {
    "redis": ("processors.state", "processors.devservices"),
    # the Kafka client libraries: the Kafka package, and Faust's transport in the worker's app wiring
    "confluent_kafka": ("processors.kafka",),
    "aiokafka": ("processors.kafka", "processors.worker.transport"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for line, imported in imported_modules(ast.parse(path.read_text(), str(path))):
            for family, allowed in ALLOWED_IMPORTERS.items():
                if inside(imported, family) and not any(inside(importer, package) for package in allowed):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {importer} imports {imported} "
                                 f"(only {', '.join(allowed)} may)")
    return found


def test_only_the_state_package_imports_redis_and_the_kafka_package_the_kafka_clients() -> None:
    assert violations() == []


def test_the_check_sees_an_import_in_a_function_body() -> None:
    tree = ast.parse("def f():\n    import redis.asyncio as aioredis\n    from redis.exceptions import RedisError\n")
    assert [name for _, name in imported_modules(tree)] == ["redis.asyncio", "redis.exceptions"]
    assert inside("redis.asyncio", "redis") and not inside("redisx", "redis")
    assert module_name(PACKAGE / "state" / "__init__.py") == "processors.state"
