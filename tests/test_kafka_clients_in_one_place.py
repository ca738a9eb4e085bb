"""Only ``processors/kafka`` constructs librdkafka clients: everything else goes through
``processors.kafka.clients``, so every client gets the one Kafka configuration (SASL/TLS included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENT_CLASSES = {"Producer", "Consumer", "AdminClient", "SerializingProducer", "DeserializingConsumer"}
SCANNED = ("processors", "edge", "tests", "benchmarks", "scripts")


def librdkafka_names(tree: ast.Module) -> set[str]:
    """The local names a module binds to confluent-kafka's client classes (imports, aliases too)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("confluent_kafka"):
            names |= {alias.asname or alias.name for alias in node.names if alias.name in CLIENT_CLASSES}
    return names


def constructions(tree: ast.Module, where: str) -> list[str]:
    """``where:line: Class(...)`` for every call that builds a confluent-kafka client."""
    local = librdkafka_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        direct = isinstance(func, ast.Name) and func.id in local
        qualified = (isinstance(func, ast.Attribute) and func.attr in CLIENT_CLASSES
                     and "confluent_kafka" in ast.unparse(func.value))
        if direct or qualified:
            found.append(f"{where}:{node.lineno}: {ast.unparse(func)}(...)")
    return found


def test_no_librdkafka_client_is_built_outside_the_kafka_package() -> None:
    package = ROOT / "processors" / "kafka"
    offenders = [line for folder in SCANNED for path in sorted((ROOT / folder).rglob("*.py"))
                 if package not in path.parents
                 for line in constructions(ast.parse(path.read_text(encoding="utf-8")), str(path.relative_to(ROOT)))]
    assert offenders == []


def test_the_check_sees_a_construction() -> None:
    tree = ast.parse("from confluent_kafka import Producer as P, TopicPartition\nimport confluent_kafka\n"
                     "P({})\nconfluent_kafka.Consumer({})\nTopicPartition('t', 0)\nclients.producer(config)\n")
    assert constructions(tree, "m.py") == ["m.py:3: P(...)", "m.py:4: confluent_kafka.Consumer(...)"]
