"""``/api/v1/docs``: the OpenAPI document rendered as one self-contained HTML page (no CDN, no script),
so it reads the same on an offline box as on the internet."""

from __future__ import annotations

import html
import json
from typing import Any

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2430}
h1{margin-bottom:.2rem} h2{margin-top:2.5rem;border-bottom:1px solid #dde} h3{margin:1.6rem 0 .3rem}
code,pre{font:13px ui-monospace,monospace;background:#f4f5f8;border-radius:4px;padding:.1rem .3rem}
pre{padding:.6rem;overflow-x:auto} table{border-collapse:collapse;margin:.4rem 0;width:100%}
td,th{border:1px solid #dde;padding:.25rem .5rem;text-align:left;vertical-align:top} th{background:#f4f5f8}
.method{display:inline-block;min-width:4.2rem;font-weight:700;text-transform:uppercase}
.get{color:#1f6f3f}.post{color:#1d4fa0}.delete{color:#a02020}.put,.patch{color:#8a5a00} .auth{color:#667;font-size:13px}
"""
AUTH = {"apiKey": "Authorization: Bearer &lt;API key&gt;", "joinToken": "Authorization: Bearer &lt;join token&gt;"}


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{_esc(name)}">{_esc(name)}</a>'
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " | ".join(f"<code>{_esc(json.dumps(v))}</code>" for v in schema["enum"])
    if "const" in schema:
        return f"<code>{_esc(json.dumps(schema['const']))}</code>"
    return _esc(schema.get("type", "any"))


def _schema_table(name: str, schema: dict[str, Any]) -> str:
    rows = []
    required = set(schema.get("required", []))
    for field, spec in (schema.get("properties") or {}).items():
        limits = [f"{k} {spec[k]}" for k in ("minLength", "maxLength", "minimum", "maximum", "pattern") if k in spec]
        default = f"default <code>{_esc(json.dumps(spec['default']))}</code>" if "default" in spec else ""
        notes = "; ".join(x for x in (spec.get("description", ""), default, ", ".join(limits)) if x)
        rows.append(f"<tr><td><code>{_esc(field)}</code>{' *' if field in required else ''}</td>"
                    f"<td>{_type(spec)}</td><td>{notes}</td></tr>")
    body = "".join(rows) or '<tr><td colspan="3">(no fields)</td></tr>'
    doc = f"<p>{_esc(schema['description'])}</p>" if schema.get("description") else ""
    return (f'<h3 id="schema-{_esc(name)}">{_esc(name)}</h3>{doc}'
            f"<table><tr><th>field (* required)</th><th>type</th><th>notes</th></tr>{body}</table>")


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    parts = [f'<h3 id="{_esc(method)}-{_esc(path)}"><span class="method {_esc(method)}">{_esc(method)}</span> '
             f"<code>{_esc(path)}</code></h3>", f"<p>{_esc(op.get('summary', ''))}</p>"]
    for requirement in op.get("security", []):
        for scheme in requirement:
            parts.append(f'<p class="auth">{AUTH.get(scheme, _esc(scheme))}</p>')
    params = op.get("parameters") or []
    if params:
        rows = "".join(f"<tr><td><code>{_esc(p['name'])}</code></td><td>{_esc(p['in'])}</td>"
                       f"<td>{_esc(p.get('description', ''))}</td></tr>" for p in params)
        parts.append(f"<table><tr><th>parameter</th><th>in</th><th>notes</th></tr>{rows}</table>")
    body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
    if body:
        parts.append(f"<p>Body (JSON): {_type(body)}</p>")
    rows = []
    for status, response in op.get("responses", {}).items():
        schema = (response.get("content") or {}).get("application/json", {}).get("schema")
        rows.append(f"<tr><td>{_esc(status)}</td><td>{_esc(response.get('description', ''))}</td>"
                    f"<td>{_type(schema) if schema else ''}</td></tr>")
    parts.append(f"<table><tr><th>status</th><th>meaning</th><th>body</th></tr>{''.join(rows)}</table>")
    return "".join(parts)


def render_docs(document: dict[str, Any]) -> str:
    """The whole API reference as HTML, from the OpenAPI document the app serves."""
    info = document.get("info", {})
    index, sections = [], []
    for path, methods in document.get("paths", {}).items():
        for method, op in methods.items():
            anchor = f"{method}-{path}"
            index.append(f'<li><a href="#{_esc(anchor)}"><span class="method {_esc(method)}">{_esc(method)}</span> '
                         f"<code>{_esc(path)}</code></a> — {_esc(op.get('summary', ''))}</li>")
            sections.append(_operation(path, method, op))
    schemas = "".join(_schema_table(n, s) for n, s in document.get("components", {}).get("schemas", {}).items())
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_esc(info.get("title", "API"))} API</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head><body>'
        f'<h1>{_esc(info.get("title", "API"))} API <small>{_esc(info.get("version", ""))}</small></h1>'
        f'<p>{_esc(info.get("description", ""))} Machine-readable: <a href="openapi.json">openapi.json</a>. '
        f"The WebSocket protocol is described in docs/protocol.md of the source tree.</p>"
        f"<h2>Operations</h2><ul>{''.join(index)}</ul>{''.join(sections)}<h2>Schemas</h2>{schemas}</body></html>"
    )
