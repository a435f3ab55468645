"""Configuration: JSON-schema validation with defaults, and clear messages for mistakes."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REFERENCE_MARKER = "## Every key"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration does not match the schema."""


def _fill_defaults(validator_class: type) -> type:
    """A validator that also inserts schema defaults (deep copies, so instances never share them)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def properties(validator: Any, props: Mapping[str, Any], instance: Any, schema: Any) -> Any:
        if isinstance(instance, MutableMapping):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_Validator = _fill_defaults(jsonschema.Draft7Validator)


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


def validate_config(config: MutableMapping[str, Any], schema: Mapping[str, Any] | None = None) -> MutableMapping[str, Any]:
    """Validate ``config`` in place, filling in defaults; raise :class:`ConfigError` listing every problem."""
    schema = load_schema() if schema is None else schema
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for error in errors:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            message = error.message
            if error.validator == "additionalProperties":
                message = f"unknown key(s): {message.split('(')[-1].rstrip(')')} - see config/README.md for the valid keys"
            lines.append(f"  - {where}: {message}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    _check_cross_field(config)
    return config


def _check_cross_field(config: Mapping[str, Any]) -> None:
    """Rules a JSON schema cannot express."""
    problems = []
    for name, dataset in config.get("datasets", {}).items():
        source = dataset["source"]
        if source == "pairs" and "pairs" not in dataset:
            problems.append(f"datasets/{name}: source 'pairs' needs a 'pairs' section with at least 'root'")
        split = dataset.get("pairs", {}).get("split", {})
        if source == "pairs" and not (split.get("fractions") or split.get("test")):
            problems.append(f"datasets/{name}/pairs/split: give either 'fractions' or explicit 'train'/'test' id lists")
        if source == "pairs" and split.get("fractions") and split.get("test"):
            problems.append(f"datasets/{name}/pairs/split: give either 'fractions' or id lists, not both")
        fractions = split.get("fractions")
        if fractions and abs(sum(fractions) - 1.0) > 1e-6:
            problems.append(f"datasets/{name}/pairs/split/fractions: {fractions} must sum to 1")
        model = dataset["model"]
        multiple = 2 ** len(model["down_blocks"])
        if dataset["training"]["patch_size"] % multiple:
            problems.append(
                f"datasets/{name}/training/patch_size: {dataset['training']['patch_size']} is not divisible by "
                f"2^{len(model['down_blocks'])} = {multiple} (one pooling per down block)"
            )
        up = model.get("up_blocks")
        if up is not None and len(up) != len(model["down_blocks"]):
            problems.append(f"datasets/{name}/model/up_blocks: needs {len(model['down_blocks'])} entries like down_blocks")
        for run_name, run in dataset["registration"].items():
            if not run["inputs"]:
                problems.append(f"datasets/{name}/registration/{run_name}/inputs: list at least one input")
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def load_config(path: Path) -> MutableMapping[str, Any]:
    with open(path) as handle:
        return validate_config(yaml.safe_load(handle) or {})


def _describe(schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    return definitions[ref.split("/")[-1]] if ref else schema


def schema_reference(schema: Mapping[str, Any] | None = None) -> str:
    """Markdown table of every configuration key: path, type, default, description."""
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
            default = f"`{json.dumps(child['default'])}`" if "default" in child else "required" if name in node.get("required", []) else ""
            rows.append(f"| `{path}{name}` | {kind(child)} | {default} | {child.get('description', '')} |")
            walk(child, f"{path}{name}.")
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            walk(extra, f"{path}<name>.")

    walk(schema, "")
    return "| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"

