"""Import layering of ``processors`` and ``edge``, checked on the source (AST), no imports executed.

Rules (the README's architecture section draws them):

- the pure core (``processors.classify``, ``processors.enforcement``, ``processors.events``) imports no
  I/O: no network, process or service client library and none of patchgate's I/O packages;
- the operators (``processors.api``, ``processors.notify``, ``processors.report``) never import the
  worker (``processors.worker``); what they share with it lives in ``state``, ``kafka``, ``events`` or
  ``policyfile`` (the policy file's loader and hot reload);
- the simulator (``processors.whatif``) runs the worker's logic only through its in-process API
  (``processors.worker.inprocess``), never its internals;
- only the state package (``processors.state``) and the dev services that start Redis servers
  (``processors.devservices``) import ``redis``; everything else goes through the state store;
- only the Kafka package (``processors.kafka``) imports the Kafka client libraries (Faust and its
  aiokafka transport in the worker's app wiring excepted).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "processors"
SCANNED = ("processors", "edge")


@dataclass(frozen=True, kw_only=True)
class Rule:
    """Modules inside ``importers`` may not import ``forbidden`` (but may import ``allowed`` inside
    it), except from inside ``exempt``."""

    name: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()

    def applies_to(self, importer: str) -> bool:
        return any(inside(importer, p) for p in self.importers) and not any(inside(importer, p) for p in self.exempt)

    def breaks(self, imported: str) -> bool:
        return (any(inside(imported, family) for family in self.forbidden)
                and not any(inside(imported, door) for door in self.allowed))


EVERYWHERE = SCANNED
PURE_CORE = ("processors.classify", "processors.enforcement", "processors.events")
OPERATORS = ("processors.api", "processors.notify", "processors.report")
IO_LIBRARIES = (
    "redis", "confluent_kafka", "aiokafka", "faust", "mode", "aiohttp", "requests", "httpx", "urllib3",
    "socket", "ssl", "selectors", "asyncio", "subprocess", "multiprocessing", "http.client", "http.server",
    "urllib.request", "smtplib", "sqlite3",
)
IO_PACKAGES = (
    "processors.state", "processors.kafka", "processors.worker", "processors.api", "processors.notify",
    "processors.report", "processors.replay", "processors.devservices", "processors.demo", "processors.policyfile",
    "edge",
)

RULES = (
    Rule(name="the pure core imports no I/O", importers=PURE_CORE, forbidden=IO_LIBRARIES + IO_PACKAGES),
    Rule(name="operators never import the worker", importers=OPERATORS, forbidden=("processors.worker",)),
    Rule(name="the simulator uses the worker only through its in-process API", importers=("processors.whatif",),
         forbidden=("processors.worker",), allowed=("processors.worker.inprocess",)),
    Rule(name="only the state package imports redis", importers=EVERYWHERE, forbidden=("redis",),
         exempt=("processors.state", "processors.devservices")),
    Rule(name="only the Kafka package imports confluent_kafka", importers=EVERYWHERE,
         forbidden=("confluent_kafka",), exempt=("processors.kafka",)),
    Rule(name="only the Kafka package (and the worker's Faust wiring) imports aiokafka and faust",
         importers=EVERYWHERE, forbidden=("aiokafka", "faust"), exempt=("processors.kafka", "processors.worker")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """The modules named by absolute imports (``from a import b``: ``a``), with their lines."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def import_targets(tree: ast.AST, importer: str) -> Iterator[tuple[int, str]]:
    """Everything an import may load: ``from a import b`` names ``a`` and ``a.b``; relative ones resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            yield from from_import_targets(node, importer)


def from_import_targets(node: ast.ImportFrom, importer: str) -> Iterator[tuple[int, str]]:
    """``from a import b`` names ``a`` and ``a.b`` (b may be a submodule); relative ones resolved."""
    base = node.module or ""
    if node.level:
        anchor = importer.split(".")[: -node.level] if importer else []
        base = ".".join(anchor + ([base] if base else []))
    if base:
        yield node.lineno, base
    for alias in node.names:
        if alias.name != "*":
            yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations_in(importer: str, source: str, where: str = "<source>", *, package: bool = False) -> list[str]:
    """Rule breaks in ``source``; ``package``: it is the ``__init__`` of ``importer`` (relative imports)."""
    found = []
    anchor = f"{importer}.__init__" if package else importer
    for line, imported in import_targets(ast.parse(source, where), anchor):
        for rule in RULES:
            if rule.applies_to(importer) and rule.breaks(imported):
                found.append(f"{where}:{line}: {importer} imports {imported} ({rule.name})")
    return found


def source_files() -> Iterator[Path]:
    for top in SCANNED:
        yield from sorted((ROOT / top).rglob("*.py"))


def violations() -> list[str]:
    found = []
    for path in source_files():
        found += violations_in(module_name(path), path.read_text(), str(path.relative_to(ROOT)),
                               package=path.name == "__init__.py")
    return found


def test_the_code_keeps_every_layering_rule() -> None:
    assert violations() == []


def test_the_scan_sees_the_packages_the_rules_name() -> None:
    modules = {module_name(path) for path in source_files()}
    for package in ("processors.classify", "processors.enforcement", "processors.events", "processors.state",
                    "processors.kafka", "processors.worker", "processors.api", "processors.notify",
                    "processors.report", "edge"):
        assert any(inside(module, package) for module in modules), package


@pytest.mark.parametrize(("importer", "source"), [
    ("processors.classify.decide", "import redis\n"),
    ("processors.enforcement.machine", "def f():\n    import socket\n"),
    ("processors.events.verdict", "from confluent_kafka import Producer\n"),
    ("processors.events", "import asyncio\n"),
    ("processors.classify.catalog", "from processors.state.keys import server_key\n"),
    ("processors.enforcement.policy", "from processors import kafka\n"),
    ("processors.classify.cli", "import subprocess\n"),
    ("processors.api.app", "from processors.worker.cli import pause_command\n"),
    ("processors.notify.service", "from processors import worker\n"),
    ("processors.report", "from .. import worker\n"),
    ("processors.report.reader", "from ..worker import output\n"),
    ("processors.worker.runtime", "import redis.asyncio as aioredis\n"),
    ("processors.report.reader", "from redis.exceptions import RedisError\n"),
    ("edge.publisher", "import redis\n"),
    ("processors.notify.service", "from confluent_kafka import Producer\n"),
    ("processors.worker.output", "import confluent_kafka\n"),
    ("edge.publisher", "from confluent_kafka.admin import AdminClient\n"),
    ("processors.api.app", "import aiokafka\n"),
    ("edge.listeners", "import faust\n"),
    ("processors.whatif.simulate", "from processors.worker.processing import BatchProcessor\n"),
    ("processors.whatif.cli", "from processors.worker import runtime\n"),
], ids=lambda value: value.split("\n")[0])
def test_a_module_breaking_a_rule_is_caught(importer: str, source: str) -> None:
    assert violations_in(importer, source, package=importer == "processors.report") != []


@pytest.mark.parametrize(("importer", "source"), [
    ("processors.state.redis_store", "import redis.asyncio as aioredis\n"),
    ("processors.devservices.redis", "import redis\n"),
    ("processors.kafka.clients", "from confluent_kafka import Producer\n"),
    ("processors.worker.transport", "from faust.transport.drivers import aiokafka\n"),
    ("processors.api.app", "from processors.kafka import publish_pause\nfrom aiohttp import web\n"),
    ("processors.classify.decide", "from processors.contracts import VERDICT_SCHEMA\nimport orjson\n"),
    ("processors.worker.app", "from processors.api import app\n"),
    ("processors.whatif.simulate", "from processors.worker.inprocess import InProcessWorker\n"),
], ids=lambda value: value.split("\n")[0])
def test_an_allowed_import_is_not_reported(importer: str, source: str) -> None:
    assert violations_in(importer, source) == []


def test_the_check_resolves_names_and_relative_imports() -> None:
    tree = ast.parse("from . import decide\nfrom ..state import keys\nimport redis.asyncio\n")
    names = [name for _, name in import_targets(tree, "processors.classify.catalog")]
    assert names == ["processors.classify", "processors.classify.decide", "processors.state",
                     "processors.state.keys", "redis.asyncio"]
    assert inside("redis.asyncio", "redis") and not inside("redisx", "redis")
    assert module_name(ROOT / "processors" / "state" / "__init__.py") == "processors.state"
