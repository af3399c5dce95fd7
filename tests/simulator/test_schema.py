"""The schema checker behind every 422: rules broken, and defaults applied."""

from __future__ import annotations

from typing import Any

import pytest

from service.simulator.schema import check, input_schema
from service.simulator.trainers import FLUX_DEV_LORA, cog_schema

COMPONENTS = {"size": {"type": "integer", "enum": [1, 2, 4]}}
SCHEMA = {
    "type": "object",
    "required": ["url"],
    "properties": {
        "url": {"type": "string", "format": "uri"},
        "size": {"allOf": [{"$ref": "#/components/schemas/size"}], "default": 2},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "name": {"type": "string", "minLength": 2, "pattern": "^[a-z]+$"},
    },
}


@pytest.mark.parametrize(
    ("value", "broken"),
    [
        ({"url": "https://x/y"}, []),
        ({"url": "data:text/plain;base64,eA=="}, []),
        ({}, [("required", "input")]),
        ({"url": "x"}, [("format", "input.url")]),
        ({"url": "https://x", "size": 3}, [("enum", "input.size")]),
        ({"url": "https://x", "size": "2"}, [("invalid_type", "input.size")]),
        (
            {"url": "https://x", "tags": ["ok", "long"]},
            [("string_lte", "input.tags.1")],
        ),
        ({"url": "https://x", "ratio": 1.01}, [("number_lte", "input.ratio")]),
        ({"url": "https://x", "ratio": -1}, [("number_gte", "input.ratio")]),
        ({"url": "https://x", "ratio": 1}, []),
        ({"url": "https://x", "name": "a"}, [("string_gte", "input.name")]),
        ({"url": "https://x", "name": "ab1"}, [("pattern", "input.name")]),
        ({"url": "https://x", "extra": object()}, []),
        ([], [("invalid_type", "input")]),
    ],
)
def test_check_lists_each_broken_rule_with_its_path(
    value: Any, broken: list[tuple[str, str]]
) -> None:
    result = check(value, SCHEMA, COMPONENTS, path="input")

    assert [(item.type, item.field) for item in result.invalid] == broken


def test_check_fills_in_defaults_but_keeps_what_was_sent() -> None:
    result = check({"url": "https://x", "size": 4}, SCHEMA, COMPONENTS)

    assert result.value == {"url": "https://x", "size": 4}
    assert check({"url": "https://x"}, SCHEMA, COMPONENTS).value["size"] == 2


def test_input_schema_prefers_training_input_like_cog() -> None:
    training_only = cog_schema({"TrainingInput": {"type": "object", "title": "T"}})

    assert input_schema(training_only) == (
        {"type": "object", "title": "T"},
        training_only["components"]["schemas"],
    )
    assert input_schema(cog_schema({})) is None
    found = input_schema(FLUX_DEV_LORA.openapi_schema())
    assert found is not None
    assert found[0]["required"] == ["input_images"]
