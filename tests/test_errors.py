"""patchgate's exceptions share the root PatchgateError and keep the builtin base they had.

The exception classes are discovered, not listed: every module of ``processors`` and ``edge`` is
imported and each exception class it defines is checked; an AST scan of the sources makes sure the
import found every class statement that names an exception base.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import edge
import processors
from processors.classify.policy import parse_policy_text
from processors.enforcement.policy import enforcement_policy_from_mapping
from processors.errors import PatchgateError
from processors.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EXCEPTION_SUFFIXES = ("Error", "Exception", "Unavailable", "Failed", "Timeout", "Mismatch")

# the builtin base each exception had before PatchgateError (plain ``Exception`` ones are not listed)
BUILTIN_BASES: dict[str, type[BaseException]] = {
    "edge.config.ConfigError": ValueError,
    "edge.eventloop.EventLoopError": ValueError,
    "edge.listeners.UnsafeSocketPath": ValueError,
    "edge.publisher.RecordRejected": ValueError,
    "edge.verdicts.BadVerdict": ValueError,
    "processors.api.auth.TokenConfigError": ValueError,
    "processors.classify.catalog.CatalogFileError": ValueError,
    "processors.classify.catalog.CatalogFormatError": ValueError,
    "processors.classify.policy.PolicyError": ValueError,
    "processors.classify.products.ProductCatalogError": ValueError,
    "processors.contracts.compiler.ContractError": ValueError,
    "processors.devservices.base.ServiceUnavailable": RuntimeError,
    "processors.enforcement.policy.PolicyError": ValueError,
    "processors.events.command.CommandKeyMismatch": ValueError,
    "processors.events.metadata.BadEnvelope": ValueError,
    "processors.kafka.clients.KafkaRefused": RuntimeError,  # a KafkaUnreachable
    "processors.kafka.clients.KafkaUnreachable": RuntimeError,
    "processors.kafka.commands.CommandSendFailed": RuntimeError,
    "processors.kafka.config.KafkaConfigError": ValueError,
    "processors.kafka.delivery.DeliveryFailed": RuntimeError,
    "processors.kafka.topics.TopicsContradict": RuntimeError,
    "processors.kafka.topics.TopicsNotCreated": RuntimeError,
    "processors.logsetup.LogFormatError": ValueError,
    "processors.notify.config.NotifyConfigError": ValueError,
    "processors.probes.ProbePortUnavailable": OSError,
    "processors.replay.driver.ReplayTimeout": RuntimeError,
    "processors.settings.SettingsError": ValueError,
    "processors.state.urls.RedisUrlError": ValueError,
    "processors.worker.admission.Refused": ValueError,
}


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def project_exceptions() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for package in (processors, edge):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            found += [value for value in vars(module).values() if inspect.isclass(value)
                      and issubclass(value, BaseException) and value.__module__ == module.__name__]
    return sorted(found, key=qualified)


EXCEPTIONS = [error for error in project_exceptions() if error is not PatchgateError]


def exception_class_statements() -> Iterator[str]:
    """``module.Class`` of each top-level class statement that reads as an exception."""
    known = {error.__name__ for error in EXCEPTIONS}
    for top in ("processors", "edge"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            for node in ast.parse(path.read_text(), str(path)).body:
                if isinstance(node, ast.ClassDef) and reads_as_exception(node, known):
                    yield f"{module}.{node.name}"


def reads_as_exception(node: ast.ClassDef, known: set[str]) -> bool:
    """Named like one (``...Error``) and derived, or derived from a builtin, known or exception-named class."""
    bases = [ast.unparse(base).rpartition(".")[2] for base in node.bases]
    builtin = [name for name in bases if isinstance(getattr(builtins, name, None), type)
               and issubclass(getattr(builtins, name), BaseException)]
    derived = bool(builtin) or any(name in known or name.endswith(EXCEPTION_SUFFIXES) for name in bases)
    return derived or (node.name.endswith(EXCEPTION_SUFFIXES) and bool(bases))


def test_discovery_finds_every_exception_class_in_the_sources() -> None:
    written = set(exception_class_statements()) - {"processors.errors.PatchgateError"}
    assert written == {qualified(error) for error in EXCEPTIONS}
    assert len(written) >= 30


def test_the_source_scan_sees_an_exception_class() -> None:
    tree = ast.parse("class Odd(KeyError): ...\nclass SlowPeer(Refused): ...\nclass Lost(redis.RedisError): ...\n"
                     "class Plain: ...\nclass CatalogError: ...\n")
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    assert [reads_as_exception(node, {"Refused"}) for node in classes] == [True, True, True, False, False]


@pytest.mark.parametrize("error", EXCEPTIONS, ids=qualified)
def test_every_error_is_a_patchgate_error(error: type[BaseException]) -> None:
    assert issubclass(error, PatchgateError)


@pytest.mark.parametrize("error", EXCEPTIONS, ids=qualified)
def test_every_error_keeps_its_builtin_base(error: type[BaseException]) -> None:
    builtin = BUILTIN_BASES.get(qualified(error))
    if builtin is not None:
        assert issubclass(error, builtin)
    else:
        assert not issubclass(error, (ValueError, RuntimeError, OSError, LookupError, TypeError))


def test_the_builtin_base_table_names_only_existing_exceptions() -> None:
    assert set(BUILTIN_BASES) <= {qualified(error) for error in EXCEPTIONS}


def test_raised_errors_are_caught_by_either_base() -> None:
    with pytest.raises(PatchgateError, match=r"classification\.grace_days: must be an integer 0\.\.365, got -3"):
        parse_policy_text("[classification]\ngrace_days = -3\n")
    with pytest.raises(ValueError, match="enforcement: the policy file needs a"):
        enforcement_policy_from_mapping({})
    with pytest.raises(PatchgateError, match="PATCHGATE_BATCH_MAX_MESSAGES: expected a number"):
        Settings.from_env({"PATCHGATE_BATCH_MAX_MESSAGES": "many"})
