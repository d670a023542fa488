"""Validation of tool arguments against the subset of JSON Schema the tools use:
type, properties, required, additionalProperties, enum, minLength, maxLength, pattern,
minimum, maximum, items. Problems name the argument (``when: expected a string``)."""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "null": (type(None),),
}


def _type_ok(value: Any, expected: str) -> bool:
    if expected in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[expected])


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Every problem found, as ``path: reason``; an empty list means valid."""
    where = path or "arguments"
    expected = schema.get("type")
    if expected is not None and not _type_ok(value, expected):
        return [f"{where}: expected {'an' if expected[0] in 'aeiou' else 'a'} {expected}"]
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if len(value.strip()) < schema.get("minLength", 0):
            problems.append(f"{where}: is too short")
        if len(value) > schema.get("maxLength", len(value)):
            problems.append(f"{where}: is longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}: has the wrong format")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}: must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where}: must be at most {schema['maximum']}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems.extend(validate(item, schema["items"], f"{where}[{i}]"))
    if isinstance(value, dict):
        problems.extend(_object(value, schema, path))
    return problems


def _object(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    props: dict[str, Any] = schema.get("properties", {})
    prefix = f"{path}." if path else ""
    for name in schema.get("required", []):
        if name not in value or value[name] is None:
            problems.append(f"{prefix}{name}: is required")
    for name, item in value.items():
        if name in props:
            if item is not None:
                problems.extend(validate(item, props[name], f"{prefix}{name}"))
        elif schema.get("additionalProperties", True) is False:
            problems.append(f"{prefix}{name}: is not an accepted argument")
    return problems
