"""The configuration schema: the packaged file, validation that fills in defaults, one line per problem.

Contract: :data:`SCHEMA` is the one copy of the schema (package data); :func:`load_schema` reads
it. :data:`Validator` is a JSON-schema Draft 7 validator that also inserts each missing key's
default (a deep copy). :func:`schema_problems` lists every way an instance breaks a schema, one
``<path>: <message>`` line each in path order (unknown keys point to config/README.md), and
:func:`section_problems` does so for one dataset section without filling defaults;
:func:`node_defaults` and :func:`section_defaults` give the schema's defaults.
:class:`ConfigError` is the error a configuration that breaks the rules raises.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, MutableMapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = [
    "SCHEMA",
    "ConfigError",
    "Validator",
    "load_schema",
    "node_defaults",
    "schema_problems",
    "section_defaults",
    "section_problems",
]


# Package data (see the docstring of comir.config): found wherever comir is installed, even inside a zip.
SCHEMA: Traversable = files("comir") / "schemas" / "config.schema.yaml"


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


#: The Draft 7 validator that also inserts the schema's defaults (:func:`_fill_defaults`).
Validator = _fill_defaults(jsonschema.Draft7Validator)


def load_schema(path: Path | Traversable = SCHEMA) -> dict[str, Any]:
    """The configuration schema (by default the packaged one) as a dictionary.

    The packaged schema is parsed once per process and each call returns a deep copy of it (the
    caller's to change, as a parsed file would be): validation, the apply stage's checks and the
    defaults of a section read it again and again.

    Parameters
    ----------
    path : pathlib.Path or Traversable, optional
        A YAML schema file. Default :data:`SCHEMA`, the packaged one.

    Returns
    -------
    dict of str to Any
        The parsed schema.
    """
    if path is SCHEMA:
        return copy.deepcopy(_packaged_schema())
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@functools.cache
def _packaged_schema() -> dict[str, Any]:
    """The packaged schema as parsed once (read-only: :func:`load_schema` hands out copies)."""
    with SCHEMA.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def schema_problems(instance: Any, schema: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every way ``instance`` breaks ``schema``, one line each (``<prefix><path>: <message>``), in path order.

    Parameters
    ----------
    instance : Any
        The configuration (or a part of it) to check. :data:`Validator` inserts the schema's
        missing defaults into it in place.
    schema : Mapping[str, Any]
        The JSON schema (Draft 7).
    prefix : str, optional
        Put before each problem's path, e.g. ``datasets/<name>/``. Default ``""``.

    Returns
    -------
    list of str
        The problems; the path of a problem at the top level (with no prefix) is ``(top level)``,
        and an unknown key's message points to config/README.md.
    """
    validator = Validator(schema)
    lines = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        where = prefix + "/".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message
        if error.validator == "additionalProperties":
            message = f"unknown key(s): {message.split('(')[-1].rstrip(')')} - see config/README.md for the valid keys"
        lines.append(f"{where}: {message}")
    return lines


def section_problems(values: Mapping[str, Any], section: str, schema: Mapping[str, Any]) -> list[str]:
    """Problems of ``values`` as a dataset's ``section`` (unknown keys, bad values), without filling defaults.

    Parameters
    ----------
    values : Mapping[str, Any]
        The section's settings (left unchanged).
    section : str
        The name of a dataset section in the schema, e.g. ``inference``.
    schema : Mapping[str, Any]
        The configuration schema (:func:`load_schema`).

    Returns
    -------
    list of str
        The problems (:func:`schema_problems`), paths relative to the section.
    """
    node = copy.deepcopy(schema["definitions"]["dataset"]["properties"][section])
    return schema_problems(copy.deepcopy(dict(values)), node)


def node_defaults(node: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults of the properties of one schema object node (those that have one).

    Parameters
    ----------
    node : Mapping[str, Any]
        A schema node with ``properties``.

    Returns
    -------
    dict of str to Any
        Property name -> a deep copy of its default.
    """
    return {name: copy.deepcopy(spec["default"]) for name, spec in node["properties"].items() if "default" in spec}


def section_defaults(section: str, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The schema's defaults of a dataset section (e.g. ``inference``), for code that runs outside a configuration.

    Parameters
    ----------
    section : str
        The name of a dataset section in the schema.
    schema : Mapping[str, Any] or None, optional
        The configuration schema. Default None: the packaged one (:func:`load_schema`).

    Returns
    -------
    dict of str to Any
        The section's keys that have a default, with it (:func:`node_defaults`).
    """
    schema = load_schema() if schema is None else schema
    return node_defaults(schema["definitions"]["dataset"]["properties"][section])
