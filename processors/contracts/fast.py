"""The fast path of contract validation for the worker's hot loop: "certainly valid" or "don't know".

:func:`fast_validator` answers from ``jsonschema-rs`` (a compiled Rust validator of the same schema
file, JSON Schema 2020-12, ~1 µs for a metadata record against ~4 µs for the generated Python
check); on "don't know" the caller runs the exact checks of :mod:`processors.contracts`, which name
the path and the rule. The schema files stay the only definition of a contract.

A "valid" answer must never accept what the exact checks refuse. JSON Schema itself is wider than
patchgate's contracts in three places, and a guard generated from the same schema closes each:

- ``"type": "integer"`` admits an integral number such as ``1.0``; the contracts want a JSON
  integer (the guard refuses a float there);
- ``const``/``enum`` compare numbers by value (``1 == 1.0``, and ``true`` is no number in JSON but
  is in Python); the guard repeats the exact comparison for non-string constants;
- ``"format": "date-time"`` is RFC 3339 to the Rust validator (a leap second ``:60`` passes); the
  contracts want what :meth:`datetime.fromisoformat` reads (the guard parses the value).

Everywhere else the Rust validator is as strict or stricter (a pattern's ``$`` does not match
before a trailing newline as Python's does): stricter only costs the exact path's time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import jsonschema_rs

from processors.contracts.codegen import SourceGenerator
from processors.contracts.compiler import SchemaCompileError, SchemaSet

FastCheck = Callable[[Any], bool]


def fast_validator(schemas: SchemaSet, document: str, pointer: str = "") -> FastCheck:
    """``document#pointer`` as a function answering True only for a value its contract accepts."""
    source = schemas.documents[document]
    root: dict[str, Any] = source
    if pointer:  # the document's definitions, with the root referring to the one asked for
        root = {key: source[key] for key in ("$schema", "$id", "$defs") if key in source}
        root["$ref"] = f"#{pointer}"
    valid = jsonschema_rs.validator_for(root, validate_formats=True).is_valid
    return GuardGenerator(schemas.resolve).checker(document, pointer, valid)


class GuardGenerator(SourceGenerator):
    """Generated code for what JSON Schema checks more widely than the contracts (see the module
    docstring), run only on values the Rust validator passed, so every type is already known; it
    visits only the parts of the document that hold such a value."""

    def __init__(self, resolve: Callable[[str, str], Any]) -> None:
        super().__init__(resolve)
        self._relevant_memo: dict[int, bool] = {}
        self._inlining: set[tuple[str, str]] = set()  # $ref targets being inlined (a cycle ends in a call)

    def checker(self, document: str, pointer: str, valid: Callable[[Any], Any]) -> FastCheck:
        """One generated function: ``valid`` (the Rust validator), then the guard, inline (it runs
        once per record); False also for a value either cannot take (not decoded JSON), for which
        the exact checks decide."""
        lines = ["def _fast(v0):", "    try:", "        if not _rust_valid(v0): return False"]
        self._node(self._resolve(document, pointer), document, "v0", lines, 2)
        lines += ["        return True", "    except Exception:", "        return False"]
        self._source.append("\n".join(lines))
        self._constants["_rust_valid"] = valid
        namespace = dict(self._constants)
        exec("\n\n".join(self._source), namespace)  # generated from our own schema files only
        return cast(FastCheck, namespace["_fast"])

    def _relevant(self, schema: Any, document: str) -> bool:
        """Whether ``schema`` (or anything below it) needs the guard."""
        if not isinstance(schema, Mapping):
            return False
        memo = self._relevant_memo.get(id(schema))
        if memo is not None:
            return memo
        self._relevant_memo[id(schema)] = False  # a recursive $ref adds nothing new
        kinds = schema.get("type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
        constants = ([schema["const"]] if "const" in schema else []) + list(schema.get("enum", []))
        found = ("integer" in kinds and "number" not in kinds) or schema.get("format") == "date-time" \
            or any(not isinstance(c, str) for c in constants)
        children = [*schema.get("properties", {}).values(), *schema.get("prefixItems", []), schema.get("items"),
                    *schema.get("oneOf", [])]
        if "$ref" in schema:
            target_doc, _, pointer = schema["$ref"].partition("#")
            children.append(self._resolve(target_doc or document, pointer))
        found = found or any(self._relevant(child, document) for child in children)
        self._relevant_memo[id(schema)] = found
        return found

    def _node(self, schema: Mapping[str, Any] | bool, document: str, var: str, out: list[str], depth: int) -> None:
        if not self._relevant(schema, document):
            return
        assert isinstance(schema, Mapping)
        if "oneOf" in schema:
            raise SchemaCompileError(f"{document}: no fast path through oneOf with integers, constants or dates")
        pad = "    " * depth
        if "$ref" in schema:
            target_doc, _, pointer = schema["$ref"].partition("#")
            target = (target_doc or document, pointer)
            if target in self._inlining:  # recursive: a call
                out.append(f"{pad}if not {self.function_for(*target)}({var}): return False")
            else:  # inline: no call per record
                self._inlining.add(target)
                self._node(self._resolve(*target), target[0], var, out, depth)
                self._inlining.discard(target)
        kinds = schema.get("type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
        if "integer" in kinds and "number" not in kinds:
            out.append(f"{pad}if type({var}) is float: return False")
        constants = ([schema["const"]] if "const" in schema else []) + list(schema.get("enum", []))
        if any(not isinstance(c, str) for c in constants):
            allowed = self._const({(type(c), c) for c in constants if not isinstance(c, (dict, list))})
            out.append(f"{pad}if type({var}) not in (dict, list, str) and (type({var}), {var}) not in {allowed}: "
                       "return False")
        if schema.get("format") == "date-time":
            out.append(f"{pad}if type({var}) is str:")
            out.append(f"{pad}    try: _fromisoformat({var})")
            out.append(f"{pad}    except ValueError: return False")
        self._object(schema, document, var, out, depth)
        self._array(schema, document, var, out, depth)

    def _object(self, schema: Mapping[str, Any], document: str, var: str, out: list[str], depth: int) -> None:
        props = {name: sub for name, sub in schema.get("properties", {}).items() if self._relevant(sub, document)}
        if not props:
            return
        pad = "    " * depth
        if schema.get("type") != "object":  # else the Rust validator made sure it is one
            out.append(f"{pad}if type({var}) is dict:")
            depth += 1
            pad += "    "
        required = set(schema.get("required", ())) if schema.get("type") == "object" else set()
        for name, sub in props.items():
            child = self._var()
            if name in required:  # present: the Rust validator made sure of it
                out.append(f"{pad}{child} = {var}[{name!r}]")
                self._node(sub, document, child, out, depth)
            else:
                out.append(f"{pad}{child} = {var}.get({name!r}, _MISSING)")
                out.append(f"{pad}if {child} is not _MISSING:")
                self._node(sub, document, child, out, depth + 1)

    def _array(self, schema: Mapping[str, Any], document: str, var: str, out: list[str], depth: int) -> None:
        prefix = schema.get("prefixItems", [])
        items = schema.get("items")
        relevant = [(index, sub) for index, sub in enumerate(prefix) if self._relevant(sub, document)]
        rest = self._relevant(items, document)
        if not relevant and not rest:
            return
        pad = "    " * depth
        if schema.get("type") != "array":  # else the Rust validator made sure it is one
            out.append(f"{pad}if type({var}) is list:")
            depth += 1
            pad += "    "
        for index, sub in relevant:
            child = self._var()
            out.append(f"{pad}if len({var}) > {index}:")
            out.append(f"{pad}    {child} = {var}[{index}]")
            self._node(sub, document, child, out, depth + 1)
        if rest:
            child = self._var()
            rest_items = f"{var}[{len(prefix)}:]" if prefix else var
            out.append(f"{pad}for {child} in {rest_items}:")
            self._node(cast("Mapping[str, Any]", items), document, child, out, depth + 1)

