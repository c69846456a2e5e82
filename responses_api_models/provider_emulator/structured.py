"""Structured outputs, emulated: what a request asks for (``response_format`` of Chat
Completions, ``text.format`` of the Responses API) and a JSON answer that fits it: the
scripted text when it parses, else the minimal instance of the schema.

Pure functions, no I/O, shared with nothing outside the emulator.
"""

from __future__ import annotations

from typing import Any

from nemo_gym_cli.wire import dumps, loads

__all__ = ["minimal_instance", "response_format", "structured"]


def response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """The structured-output format a request asks for, as ``{"type", "schema"?}``: chat's
    ``response_format`` or the Responses API's ``text.format``; None for plain text."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt.get("json_schema"), dict) else None
    else:
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
        schema = fmt.get("schema") if isinstance(fmt, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        return None
    return {"type": fmt["type"], "schema": schema if isinstance(schema, dict) else {}}


def structured(text: str, fmt: dict[str, Any]) -> str:
    """The answer as the JSON ``fmt`` asks for: ``text`` itself when it parses (a script may
    give the exact JSON), else the minimal instance of the schema (``{}`` for json_object)."""
    try:
        value = loads(text)
    except ValueError:
        value = None
    if value is not None and (fmt["type"] == "json_schema" or isinstance(value, dict)):
        return text
    schema = fmt["schema"] if fmt["type"] == "json_schema" else {"type": "object"}
    return dumps(minimal_instance(schema)).decode()


def minimal_instance(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """The smallest value valid against a JSON schema: required properties only, the fewest
    items, the lowest number, the shortest string; ``default``, ``const``, ``enum``,
    ``$ref`` (to ``$defs``/``definitions``), ``anyOf``/``oneOf``/``allOf`` understood."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 32:
        return None
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return minimal_instance(target, root, depth + 1)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return minimal_instance(options[0], root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = minimal_instance(part, root, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties") or {}
        return {
            name: minimal_instance(properties.get(name, {}), root, depth + 1) for name in schema.get("required") or []
        }
    if kind == "array":
        return [
            minimal_instance(schema.get("items") or {}, root, depth + 1) for _ in range(schema.get("minItems") or 0)
        ]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = low if isinstance(low, (int, float)) else 0
        if "exclusiveMinimum" in schema and value == schema["exclusiveMinimum"]:
            value += 1
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "x" * int(schema.get("minLength") or 0)
