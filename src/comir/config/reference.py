"""The configuration reference: the Markdown table of every key that ends config/README.md.

Contract: :func:`schema_reference` renders the schema (the packaged one by default) as a table of
path, type, default and description, one row per key in the schema's order; ``make config-docs``
writes it after :data:`REFERENCE_MARKER` in config/README.md, and a test checks the file is current.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from comir.config.schema import load_schema

__all__ = ["REFERENCE_MARKER", "schema_reference"]


#: The heading of config/README.md after which the generated table stands (``make config-docs``).
REFERENCE_MARKER = "## Every key"


def _describe(schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    return definitions[ref.split("/")[-1]] if ref else schema


def schema_reference(schema: Mapping[str, Any] | None = None) -> str:
    """Markdown table of every configuration key: path, type, default, description.

    Parameters
    ----------
    schema : Mapping[str, Any] or None, optional
        The schema to render. Default None: the packaged one (:func:`comir.config.schema.load_schema`).

    Returns
    -------
    str
        The table, one row per key (dotted path; ``<name>`` for a key of a mapping of named
        entries) in the schema's order, ending with a newline.
    """
    schema = load_schema() if schema is None else schema
    definitions = schema.get("definitions", {})
    rows: list[str] = []

    def kind(node: Mapping[str, Any]) -> str:
        if "enum" in node:
            return " \\| ".join(f"`{v}`" for v in node["enum"])
        value = node.get("type", "object")
        return " or ".join(value) if isinstance(value, list) else value

    def walk(node: Mapping[str, Any], path: str) -> None:
        node = _describe(node, definitions)
        for name, child in node.get("properties", {}).items():
            child = _describe(child, definitions)
            if "default" in child:
                default = f"`{json.dumps(child['default'])}`"
            else:
                default = "required" if name in node.get("required", []) else ""
            rows.append(f"| `{path}{name}` | {kind(child)} | {default} | {child.get('description', '')} |")
            walk(child, f"{path}{name}.")
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            walk(extra, f"{path}<name>.")

    walk(schema, "")
    return "| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
