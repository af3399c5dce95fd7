"""The OpenAPI 3.1 document, built from the routes and the models handlers use.

Each handler declares its operation with `@operation(...)`, naming the pydantic
models it reads and answers with; the document is assembled from the router and
those models when the app starts, so it cannot drift from the code. A route
without an operation, or an operation without a route, fails a test.

GET /openapi.json serves the document; GET /docs renders it as a page that needs
nothing from outside the package.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from .. import __version__
from ..domain.names import ALIAS_NAME, NAME_PATTERN, VERSION_OR_ALIAS

H = TypeVar("H", bound=Callable[..., Any])

Location = Literal["query", "header", "path"]


class Problem(BaseModel):
    """An RFC 9457 problem: every error answer has this shape."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str


@dataclass(frozen=True)
class Param:
    name: str
    where: Location
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    request: type[BaseModel] | None = None
    # Status to the model of its JSON body, or None for no body.
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    # Status to a content type other than JSON (text/plain metrics, the docs page).
    raw: dict[int, str] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    # Error statuses this operation can answer besides the common ones.
    errors: tuple[int, ...] = ()
    authenticated: bool = True
    description: str = ""


ATTRIBUTE = "__openapi_operation__"

# What each path parameter may be; the handlers hold values to the same rules.
ULID = "[0-9A-HJKMNP-TV-Z]{26}"
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "owner": {"type": "string", "pattern": f"^{NAME_PATTERN}$"},
    "name": {"type": "string", "pattern": f"^{NAME_PATTERN}$"},
    "training_id": {"type": "string", "pattern": f"^trn_{ULID}$"},
    "notification_id": {"type": "string", "pattern": f"^msg_{ULID}$"},
    "version": {"type": "string", "pattern": VERSION_OR_ALIAS},
    "alias": {"type": "string", "pattern": ALIAS_NAME},
}

# Parameters several operations share.
LIMIT = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
    "Results per page.",
)
CURSOR = Param(
    "cursor",
    "query",
    {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"},
    "Opaque, from a previous page's next link.",
)
PAGE = (LIMIT, CURSOR)

# Statuses every operation can answer: a request that cannot be read, and the
# service or its database failing.
COMMON_ERRORS = (400, 500, 503)
AUTH_ERRORS = (401, 403)

_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "The request cannot be read",
    401: "No valid token",
    403: "The token may not use this destination's owner",
    404: "Not found",
    409: "The resource's state does not allow this",
    413: "The body is too large",
    422: "The request breaks a rule; errors lists each field",
    500: "An unexpected error; quote the request_id",
    502: "Replicate failed in a way the caller cannot fix",
    503: "The database or Replicate cannot be reached; retry",
}


def operation(summary: str, *, tag: str, **details: Any) -> Callable[[H], H]:
    """Declare what a handler is in the API document."""

    def attach(handler: H) -> H:
        doc = handler.__doc__ or ""
        description = details.pop("description", "") or _first_paragraphs(doc)
        setattr(
            handler,
            ATTRIBUTE,
            Operation(summary=summary, tag=tag, description=description, **details),
        )
        return handler

    return attach


def _first_paragraphs(doc: str) -> str:
    lines = [line.strip() for line in doc.strip().splitlines()]
    return "\n".join(lines).strip()


def documented_routes(app: web.Application) -> list[tuple[str, str, Operation | None]]:
    """Every route as (method, path template, its operation or None)."""
    found = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        found.append(
            (
                route.method,
                route.resource.canonical,
                getattr(route.handler, ATTRIBUTE, None),
            )
        )
    return found


def build(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every route of `app`."""
    routes = [(m, p, op) for m, p, op in documented_routes(app) if op is not None]
    models: set[tuple[type[BaseModel], Literal["validation", "serialization"]]] = {
        (Problem, "serialization")
    }
    for _, _, op in routes:
        if op.request is not None:
            models.add((op.request, "validation"))
        for model in op.responses.values():
            if model is not None:
                models.add((model, "serialization"))
    refs, schemas = models_json_schema(
        sorted(models, key=lambda item: (item[0].__name__, item[1])),
        ref_template="#/components/schemas/{model}",
    )

    paths: dict[str, dict[str, Any]] = {}
    for method, path, op in routes:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tuneyard",
            "version": __version__,
            "description": (
                "Fine-tune models on Replicate for your services: submit trainings, "
                "follow them, and serve each destination's versions."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token made with `tuneyard tokens create NAME`.",
                }
            },
        },
        "security": [{"bearer": []}],
    }


def _operation(
    method: str, path: str, op: Operation, refs: dict[Any, dict[str, Any]]
) -> dict[str, Any]:
    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]

    responses: dict[str, Any] = {}
    for status, model in op.responses.items():
        entry: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "")}
        if model is not None:
            entry["content"] = {
                "application/json": {"schema": ref(model, "serialization")}
            }
        responses[str(status)] = entry
    for status, content_type in op.raw.items():
        entry = responses.setdefault(
            str(status), {"description": _DESCRIPTIONS.get(status, "")}
        )
        entry.setdefault("content", {})[content_type] = {"schema": {"type": "string"}}
    errors = set(COMMON_ERRORS) | set(op.errors)
    if op.request is not None:
        errors |= {413, 422}
    if op.authenticated:
        errors |= set(AUTH_ERRORS)
    problem = {"application/problem+json": {"schema": ref(Problem, "serialization")}}
    for status in sorted(errors):
        responses.setdefault(
            str(status), {"description": _DESCRIPTIONS[status], "content": problem}
        )

    parameters = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]}
        for name in re.findall(r"{(\w+)}", path)
    ]
    parameters += [
        {
            "name": p.name,
            "in": p.where,
            "required": p.required,
            "schema": p.schema,
            **({"description": p.description} if p.description else {}),
        }
        for p in op.params
    ]
    result: dict[str, Any] = {
        "operationId": f"{method.lower()}_{_slug(path)}",
        "summary": op.summary,
        "tags": [op.tag],
        "responses": dict(sorted(responses.items())),
    }
    if op.description:
        result["description"] = op.description
    if parameters:
        result["parameters"] = parameters
    if op.request is not None:
        result["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(op.request, "validation")}},
        }
    if not op.authenticated:
        result["security"] = []
    return result


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_")


DOCUMENT = web.AppKey("openapi_document", dict)

routes = web.RouteTableDef()


@routes.get("/openapi.json")
@operation(
    "The API document",
    tag="meta",
    raw={200: "application/json"},
    authenticated=False,
)
async def openapi_json(request: web.Request) -> web.Response:
    """This document, OpenAPI 3.1, generated from the code."""
    return web.json_response(request.app[DOCUMENT])


@routes.get("/docs")
@operation(
    "The API, as a page", tag="meta", raw={200: "text/html"}, authenticated=False
)
async def docs_page(request: web.Request) -> web.Response:
    """The API document rendered as one page, with no assets from elsewhere."""
    return web.Response(
        text=render_page(request.app[DOCUMENT]), content_type="text/html"
    )


def render_page(document: dict[str, Any]) -> str:
    """A readable page of every operation, its parameters, body and answers."""
    style = resources.files("service.api").joinpath("docs.css").read_text()
    esc = html.escape
    sections = []
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append((method, path, op))
    for tag, ops in by_tag.items():
        items = []
        for method, path, op in ops:
            params = "".join(
                f"<tr><td><code>{esc(p['name'])}</code></td><td>{esc(p['in'])}</td>"
                f"<td>{'yes' if p.get('required') else ''}</td>"
                f"<td>{esc(p.get('description', ''))}</td></tr>"
                for p in op.get("parameters", [])
            )
            body = ""
            if "requestBody" in op:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                body = f"<h4>Body</h4><pre>{esc(_schema_name(schema))}</pre>"
            answers = "".join(
                f"<li><b>{esc(status)}</b> {esc(answer.get('description', ''))} "
                f"{esc(_answer_type(answer))}</li>"
                for status, answer in op["responses"].items()
            )
            auth = "" if op.get("security") == [] else " <span class=auth>token</span>"
            items.append(
                f"<section><h3><span class=method>{esc(method.upper())}</span> "
                f"<code>{esc(path)}</code>{auth}</h3>"
                f"<p class=summary>{esc(op['summary'])}</p>"
                f"<pre class=description>{esc(op.get('description', ''))}</pre>"
                + (
                    "<h4>Parameters</h4><table><tr><th>name</th><th>in</th>"
                    f"<th>required</th><th></th></tr>{params}</table>"
                    if params
                    else ""
                )
                + f"{body}<h4>Answers</h4><ul>{answers}</ul></section>"
            )
        sections.append(f"<h2>{esc(tag)}</h2>{''.join(items)}")
    schemas = "".join(
        f"<section id='{esc(name)}'><h3>{esc(name)}</h3>"
        f"<pre>{esc(json.dumps(schema, indent=2))}</pre></section>"
        for name, schema in document["components"]["schemas"].items()
    )
    info = document["info"]
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{esc(info['title'])} API</title><style>{style}</style></head><body>"
        f"<h1>{esc(info['title'])} API <small>{esc(info['version'])}</small></h1>"
        f"<p>{esc(info['description'])} The machine-readable document is at "
        "<a href=/openapi.json>/openapi.json</a>.</p>"
        f"{''.join(sections)}<h2>Schemas</h2>{schemas}</body></html>"
    )


def _schema_name(schema: dict[str, Any]) -> str:
    return schema.get("$ref", "").rsplit("/", 1)[-1] or json.dumps(schema)


def _answer_type(answer: dict[str, Any]) -> str:
    for content_type, body in answer.get("content", {}).items():
        return f"{content_type} {_schema_name(body.get('schema', {}))}".strip()
    return ""
