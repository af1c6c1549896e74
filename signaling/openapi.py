"""The OpenAPI 3.1 document at ``/api/v1/openapi.json``, built from the API's declared operations."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from pydantic import BaseModel

from parley.signaling import api_models as api
from parley.signaling.api import Operation

REF = "#/components/schemas/{model}"


def _version() -> str:
    try:
        return metadata.version("parley")
    except metadata.PackageNotFoundError:
        return "0+unknown"

# Routes outside the REST API, described here by hand.
EXTRA_PATHS: dict[str, dict[str, Any]] = {
    "/": {"get": {"summary": "The bundled web page (call button, live transcript)", "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
    "/web/{path}": {"get": {
        "summary": "Static files of the bundled page and the JS SDK (/web/parley.js)",
        "parameters": [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "A file"}, "404": {"description": "No such file"}},
    }},
    "/ws": {"get": {
        "summary": "Signaling WebSocket (JSON messages; see docs/protocol.md). Needs a join token.",
        "parameters": [{"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
                        "description": "Join token; may instead be sent in the join message"}],
        "responses": {"101": {"description": "Switching to the WebSocket protocol"}},
    }},
    "/healthz": {"get": {"summary": "Liveness and the loaded models", "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": REF.format(model="Health")}}}}}}},
    "/readyz": {"get": {"summary": "Readiness: models loaded, LLM answering, not draining (503 with the reasons otherwise)", "responses": {"200": {"description": "Ready", "content": {"application/json": {"schema": {"$ref": REF.format(model="Readiness")}}}}, "503": {"description": "Not ready", "content": {"application/json": {"schema": {"$ref": REF.format(model="Readiness")}}}}}}},
    "/stats": {"get": {"summary": "Live calls, rooms and the agents' outgoing-frame counters", "responses": {"200": {"description": "Counters", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/metrics": {"get": {"summary": "Prometheus text format: live counts, turn latency histograms, errors by code", "responses": {"200": {"description": "Metrics", "content": {"text/plain": {}}}}}},
    "/v1/realtime": {"get": {
        "summary": "OpenAI's Realtime API over a WebSocket (see docs/realtime.md). Admin key or client secret as Bearer",
        "parameters": [{"name": "model", "in": "query", "required": False, "schema": {"type": "string"}}],
        "responses": {"101": {"description": "Switching to the WebSocket protocol"}, "401": {"description": "No valid key"},
                      "429": {"description": "busy: the agent's capacity is in use"}},
    }},
    "/v1/realtime/calls": {
        "post": {
            "summary": "OpenAI's Realtime API over WebRTC: the SDP offer (application/sdp) in, the answer out; events on the oai-events data channel",
            "requestBody": {"required": True, "content": {"application/sdp": {}}},
            "responses": {"201": {"description": "The SDP answer", "content": {"application/sdp": {}}},
                          "400": {"description": "An offer Parley cannot take"}, "401": {"description": "No valid key"},
                          "429": {"description": "busy"}},
        },
        "options": {"summary": "CORS preflight (answered for other origins when dev mode is off)",
                    "responses": {"204": {"description": "Preflight"}}},
    },
    "/v1/realtime/client_secrets": {"post": {
        "summary": "A short-lived client secret (ek_…) for a browser's Realtime sessions (admin key)",
        "responses": {"200": {"description": "{value, expires_at, session}", "content": {"application/json": {}}},
                      "401": {"description": "Not the admin key"}},
    }},
    "/api/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}}},
    "/api/v1/docs": {"get": {"summary": "This document as a readable HTML page", "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
}


def _schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {"summary": op.summary, "operationId": op.handler.__name__, "responses": {}}
    params = [part[1:-1] for part in op.path.split("/") if part.startswith("{")]
    if params:
        doc["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
    if op.body is not None:
        doc["requestBody"] = {"required": False, "content": {"application/json": {"schema": {"$ref": REF.format(model=op.body.__name__)}}}}
    for status, model in op.responses.items():
        response: dict[str, Any] = {"description": "OK" if status < 300 else "Error"}
        if model is not None:
            response["content"] = {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}
        doc["responses"][str(status)] = response
    error = {"content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}}
    for status, text in ((400, "Bad request"), (401, "Missing or wrong API key"), (404, "No such room"),
                         (409, "Conflict"), (422, "Invalid body"), (429, "A configured limit is reached")):
        doc["responses"].setdefault(str(status), {"description": text, **error})
    if op.auth == "admin":
        doc["security"] = [{"apiKey": []}]
    elif op.auth == "token":
        doc["security"] = [{"joinToken": []}]
    return doc


def build_openapi(operations: list[Operation]) -> dict[str, Any]:
    """The document for the routes this app registered."""
    paths: dict[str, dict[str, Any]] = {path: dict(methods) for path, methods in EXTRA_PATHS.items()}
    models: list[type[BaseModel]] = [api.ErrorBody, api.Health, api.Readiness]
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
        models += [op.body] if op.body else []
        models += [m for m in op.responses.values() if m is not None]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Parley", "version": _version(),
                 "description": "Rooms and join tokens for Parley, a self-hosted real-time voice AI media server."},
        "paths": paths,
        "components": {
            "schemas": _schemas(list(dict.fromkeys(models))),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "auth.api_key"},
                "joinToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "a join token"},
            },
        },
    }
