"""Checking JSON against the subset of JSON Schema that cog and Replicate use.

A trainer version's inputs are described by its OpenAPI document (cog writes
`components.schemas.TrainingInput`, and older trainers `Input`); request bodies
are described the same way here. Checking yields the value with defaults filled
in and every rule broken, each worded and typed as Replicate's `invalid_fields`
entries are (Replicate validates with gojsonschema and keeps its phrasing).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidField

Schema = Mapping[str, Any]

_JSON_TYPE_NAMES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


@dataclass
class Checked:
    """The value with defaults applied, and the rules it breaks (none if valid)."""

    value: Any
    invalid: list[InvalidField] = field(default_factory=list)


def check(
    value: Any, schema: Schema, components: Schema | None = None, path: str = ""
) -> Checked:
    """Check `value` against `schema`; `$ref`s resolve within `components`.

    `path` names `value` in the rules broken: "" for a request body, "input" for
    a training's input, whose fields are then "input.steps" and so on.
    """
    checker = _Checker(components or {})
    value = checker.check(value, schema, path)
    return Checked(value, checker.invalid)


def input_schema(openapi_schema: Schema) -> tuple[Schema, Schema] | None:
    """A trainer's training inputs and the components they refer to, if any.

    cog names the training inputs `TrainingInput` and falls back to `Input` for
    older trainers; so does this.
    """
    components = openapi_schema.get("components", {}).get("schemas", {})
    found = components.get("TrainingInput") or components.get("Input")
    return (found, components) if isinstance(found, Mapping) else None


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return "integer"
    for python_type, name in _JSON_TYPE_NAMES:
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def _is_type(value: Any, expected: str | list[str]) -> bool:
    if isinstance(expected, list):
        return any(_is_type(value, one) for one in expected)
    actual = json_type(value)
    if expected == "number":
        return actual in ("integer", "number")
    return actual == expected


def _is_uri(value: str) -> bool:
    parts = urlsplit(value)
    return bool(parts.scheme) and (bool(parts.netloc) or parts.scheme == "data")


class _Checker:
    def __init__(self, components: Schema) -> None:
        self.components = components
        self.invalid: list[InvalidField] = []

    def fail(self, kind: str, path: str, description: str) -> None:
        self.invalid.append(InvalidField(kind, path, description))

    def resolve(self, schema: Schema) -> Schema:
        """Merge `$ref` and `allOf` into one schema, as cog uses them for enums."""
        merged: dict[str, Any] = {}
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = self.components.get(ref.rsplit("/", 1)[-1], {})
            merged.update(self.resolve(target))
        for part in schema.get("allOf", ()):
            merged.update(self.resolve(part))
        merged.update({k: v for k, v in schema.items() if k not in ("$ref", "allOf")})
        return merged

    def check(self, value: Any, schema: Schema, path: str) -> Any:
        schema = self.resolve(schema)
        expected = schema.get("type")
        if expected is not None and not _is_type(value, expected):
            wanted = expected if isinstance(expected, str) else ", ".join(expected)
            self.fail(
                "invalid_type",
                path,
                f"Invalid type. Expected: {wanted}, given: {json_type(value)}",
            )
            return value
        if "enum" in schema and value not in schema["enum"]:
            allowed = ", ".join(json.dumps(option) for option in schema["enum"])
            name = path or "(root)"
            self.fail("enum", path, f"{name} must be one of the following: {allowed}")
        if isinstance(value, dict):
            return self.check_object(value, schema, path)
        if isinstance(value, list):
            return [
                self.check(item, schema.get("items", {}), f"{path}.{index}")
                for index, item in enumerate(value)
            ]
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.check_number(value, schema, path)
        if isinstance(value, str):
            self.check_string(value, schema, path)
        return value

    def check_object(self, value: dict[str, Any], schema: Schema, path: str) -> Any:
        properties: Mapping[str, Schema] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                self.fail("required", path, f"{name} is required")
        if schema.get("additionalProperties") is False:
            for name in value:
                if name not in properties:
                    self.fail(
                        "additional_property_not_allowed",
                        path,
                        f"Additional property {name} is not allowed",
                    )
        result = dict(value)
        for name, subschema in properties.items():
            child = f"{path}.{name}" if path else name
            if name in value:
                result[name] = self.check(value[name], subschema, child)
            else:
                default = self.resolve(subschema).get("default")
                if default is not None:
                    result[name] = default
        return result

    def check_number(self, value: float, schema: Schema, path: str) -> None:
        if not math.isfinite(value):
            self.fail("invalid_type", path, "Invalid type. Expected a finite number")
            return
        minimum, maximum = schema.get("minimum"), schema.get("maximum")
        if minimum is not None and value < minimum:
            self.fail("number_gte", path, f"Must be greater than or equal to {minimum}")
        if maximum is not None and value > maximum:
            self.fail("number_lte", path, f"Must be less than or equal to {maximum}")

    def check_string(self, value: str, schema: Schema, path: str) -> None:
        min_length, max_length = schema.get("minLength"), schema.get("maxLength")
        if min_length is not None and len(value) < min_length:
            self.fail(
                "string_gte",
                path,
                f"String length must be greater than or equal to {min_length}",
            )
        if max_length is not None and len(value) > max_length:
            self.fail(
                "string_lte",
                path,
                f"String length must be less than or equal to {max_length}",
            )
        pattern = schema.get("pattern")
        if pattern is not None and not re.search(pattern, value):
            self.fail("pattern", path, f"Does not match pattern '{pattern}'")
        if schema.get("format") == "uri" and not _is_uri(value):
            self.fail("format", path, "Does not match format 'uri'")
