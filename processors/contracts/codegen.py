"""Generate plain Python source for the fast path of contract validation.

:mod:`processors.contracts.compiler` builds closures that report the exact path and rule of a
violation; walking them costs one call per schema node. The functions generated here answer only
"valid or not" with straight-line code (no calls except for ``$ref`` targets and ``oneOf``), so a
valid event, by far the common case, costs a few microseconds. On a "not valid" answer the caller
runs the closures to explain why. Both are checked against the reference validator by the tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,), "number": (int, float),
    "boolean": (bool,), "null": (type(None),),
}


class SourceGenerator:
    def __init__(self, resolve: Callable[[str, str], Any]) -> None:
        self._resolve = resolve
        self._functions: dict[tuple[str, str], str] = {}
        self._source: list[str] = []
        self._constants: dict[str, Any] = {"_fromisoformat": datetime.fromisoformat, "_MISSING": _MISSING}
        self._counter = 0

    def function_for(self, document: str, pointer: str) -> str:
        key = (document, pointer)
        if key not in self._functions:
            name = f"_valid_{len(self._functions)}"
            self._functions[key] = name
            lines = [f"def {name}(v0):"]
            self._node(self._resolve(document, pointer), document, "v0", lines, 1)
            lines.append("    return True")
            self._source.append("\n".join(lines))
        return self._functions[key]

    def build(self, document: str, pointer: str = "") -> Callable[[Any], bool]:
        name = self.function_for(document, pointer)
        namespace = dict(self._constants)
        exec("\n\n".join(self._source), namespace)  # generated from our own schema files only
        return namespace[name]  # type: ignore[no-any-return]

    def _var(self) -> str:
        self._counter += 1
        return f"v{self._counter}"

    def _const(self, value: Any) -> str:
        name = f"_c{len(self._constants)}"
        self._constants[name] = value
        return name

    def _node(self, schema: Mapping[str, Any] | bool, document: str, var: str, out: list[str], depth: int) -> None:
        pad = "    " * depth
        if schema is True:
            return
        if schema is False:
            out.append(f"{pad}return False")
            return
        assert isinstance(schema, Mapping)
        if "$ref" in schema:
            target_doc, _, pointer = schema["$ref"].partition("#")
            out.append(f"{pad}if not {self.function_for(target_doc or document, pointer)}({var}): return False")
        if "oneOf" in schema:
            alternatives = [self._inline_function(sub, document) for sub in schema["oneOf"]]
            calls = " + ".join(f"{name}({var})" for name in alternatives)
            out.append(f"{pad}if ({calls}) != 1: return False")
        if "const" in schema:
            const = self._const(schema["const"])
            out.append(f"{pad}if {var} != {const} or type({var}) is not type({const}): return False")
        if "enum" in schema:
            allowed = self._const({(type(o), o) for o in schema["enum"]})
            out.append(f"{pad}if type({var}) in (dict, list) or (type({var}), {var}) not in {allowed}: return False")
        names = schema.get("type")
        kinds = [names] if isinstance(names, str) else list(names or [])
        if kinds == ["string"]:
            # the common leaf: one line, no second type test
            checks = self._string_checks(schema, var)
            out.append(f"{pad}if type({var}) is not str{''.join(' or ' + c for c in checks)}: return False")
            self._date_time(schema, var, out, pad, typed=True)
            return
        if kinds:
            allowed_types = self._const(frozenset(t for k in kinds for t in _PY_TYPES[k]))
            out.append(f"{pad}if type({var}) not in {allowed_types}: return False")
        self._string(schema, var, out, pad)
        self._number(schema, var, out, pad)
        self._object(schema, document, var, out, depth)
        self._array(schema, document, var, out, depth)

    def _inline_function(self, schema: Any, document: str) -> str:
        name = f"_alt_{len(self._source)}_{self._counter}"
        self._counter += 1
        lines = [f"def {name}(v0):"]
        self._node(schema, document, "v0", lines, 1)
        lines.append("    return True")
        self._source.append("\n".join(lines))
        return name

    def _string_checks(self, schema: Mapping[str, Any], var: str) -> list[str]:
        checks = []
        if "minLength" in schema:
            checks.append(f"len({var}) < {int(schema['minLength'])}")
        if "maxLength" in schema:
            checks.append(f"len({var}) > {int(schema['maxLength'])}")
        if "pattern" in schema:
            checks.append(f"{self._const(re.compile(schema['pattern']).search)}({var}) is None")
        return checks

    def _string(self, schema: Mapping[str, Any], var: str, out: list[str], pad: str) -> None:
        checks = self._string_checks(schema, var)
        if checks:
            out.append(f"{pad}if type({var}) is str and ({' or '.join(checks)}): return False")
        self._date_time(schema, var, out, pad, typed=False)

    def _date_time(self, schema: Mapping[str, Any], var: str, out: list[str], pad: str, typed: bool) -> None:
        if schema.get("format") != "date-time":
            return
        if typed:
            out.append(f"{pad}try: _fromisoformat({var})")
            out.append(f"{pad}except ValueError: return False")
            return
        out.append(f"{pad}if type({var}) is str:")
        out.append(f"{pad}    try: _fromisoformat({var})")
        out.append(f"{pad}    except ValueError: return False")

    def _number(self, schema: Mapping[str, Any], var: str, out: list[str], pad: str) -> None:
        checks = []
        if "minimum" in schema:
            checks.append(f"{var} < {schema['minimum']!r}")
        if "maximum" in schema:
            checks.append(f"{var} > {schema['maximum']!r}")
        if checks:
            out.append(f"{pad}if type({var}) in (int, float) and ({' or '.join(checks)}): return False")

    def _object(self, schema: Mapping[str, Any], document: str, var: str, out: list[str], depth: int) -> None:
        props = schema.get("properties", {})
        required = schema.get("required", [])
        extra = schema.get("additionalProperties", True)
        if not props and not required and extra is True:
            return
        pad = "    " * depth
        out.append(f"{pad}if type({var}) is dict:")
        inner = pad + "    "
        for name in required:
            if name not in props:
                out.append(f"{inner}if {name!r} not in {var}: return False")
        if extra is False:
            out.append(f"{inner}if not {self._const(frozenset(props))}.issuperset({var}): return False")
        elif extra is not True:
            raise NotImplementedError("additionalProperties with a schema")
        for name, sub in props.items():
            child = self._var()
            out.append(f"{inner}{child} = {var}.get({name!r}, _MISSING)")
            if name in required:  # one lookup answers both "present?" and "valid?"
                out.append(f"{inner}if {child} is _MISSING: return False")
                self._node(sub, document, child, out, depth + 1)
                continue
            out.append(f"{inner}if {child} is not _MISSING:")
            body: list[str] = []
            self._node(sub, document, child, body, depth + 2)
            out.extend(body or [f"{inner}    pass"])

    def _array(self, schema: Mapping[str, Any], document: str, var: str, out: list[str], depth: int) -> None:
        prefix = schema.get("prefixItems", [])
        items = schema.get("items", True)
        low, high = schema.get("minItems"), schema.get("maxItems")
        if not prefix and items is True and low is None and high is None:
            return
        pad = "    " * depth
        out.append(f"{pad}if type({var}) is list:")
        inner = pad + "    "
        if low is not None:
            out.append(f"{inner}if len({var}) < {int(low)}: return False")
        if high is not None:
            out.append(f"{inner}if len({var}) > {int(high)}: return False")
        if items is False:
            out.append(f"{inner}if len({var}) > {len(prefix)}: return False")
        exact = items is False and low == len(prefix)
        if exact and prefix:
            # a fixed-size tuple such as a [name, value] header: length already checked, unpack once
            children = [self._var() for _ in prefix]
            out.append(f"{inner}{', '.join(children)}{',' if len(children) == 1 else ''} = {var}")
            for child, sub in zip(children, prefix, strict=True):
                self._node(sub, document, child, out, depth + 1)
        for index, sub in enumerate(prefix if not exact else []):
            child = self._var()
            out.append(f"{inner}if len({var}) > {index}:")
            out.append(f"{inner}    {child} = {var}[{index}]")
            self._node(sub, document, child, out, depth + 2)
        if items not in (True, False):
            child = self._var()
            out.append(f"{inner}for {child} in {var}[{len(prefix)}:]:" if prefix else f"{inner}for {child} in {var}:")
            body: list[str] = []
            self._node(items, document, child, body, depth + 2)
            out.extend(body or [f"{inner}    pass"])


_MISSING = object()
