"""A configuration validated: the schema, the generated entries and the rules, with one message.

Contract: :func:`validate_config` fills in the schema's defaults and the generated variants and
test sets in place and raises :class:`comir.config.schema.ConfigError` listing every problem;
:func:`load_config` merges YAML files in order (as Snakemake's ``--configfile a.yaml b.yaml``) and
validates the result.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import yaml

from comir.config.expand import expand_stress, expand_sweeps
from comir.config.rules import (
    apply_problems,
    dataset_problems,
    pool_problems,
    run_rule_problems,
    variant_problems,
)
from comir.config.schema import ConfigError, load_schema, schema_problems
from comir.config.variants import deep_merge

__all__ = ["load_config", "validate_config"]


def validate_config(
    config: MutableMapping[str, Any], schema: Mapping[str, Any] | None = None
) -> MutableMapping[str, Any]:
    """Validate ``config`` in place, filling in defaults; raise :class:`ConfigError` listing every problem.

    The generated variants and test sets (:mod:`comir.config.expand`) are added and the rules of
    :mod:`comir.config.rules` checked only when the configuration matches the schema.

    Parameters
    ----------
    config : MutableMapping[str, Any]
        The configuration, as parsed from YAML; completed in place.
    schema : Mapping[str, Any] or None, optional
        The schema. Default None: the packaged one (:func:`comir.config.schema.load_schema`).

    Returns
    -------
    MutableMapping[str, Any]
        ``config`` itself.

    Raises
    ------
    ConfigError
        Listing every problem, one line each.
    """
    schema = load_schema() if schema is None else schema
    problems = schema_problems(config, schema)
    if not problems:
        for name, dataset in config.get("datasets", {}).items():
            problems += expand_sweeps(name, dataset)
            problems += expand_stress(name, dataset)
            problems += dataset_problems(name, dataset)
            problems += variant_problems(name, dataset, schema)
        for name, pool in config.get("pools", {}).items():
            problems += pool_problems(name, pool, config["datasets"])
        problems += run_rule_problems(config.get("datasets", {}))
        for name, job in config.get("apply", {}).items():
            problems += apply_problems(name, job, config["datasets"], schema)
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
    return config


def load_config(*paths: Path) -> MutableMapping[str, Any]:
    """The configuration of the YAML files ``paths``, validated and with its defaults filled in.

    Several files are merged in order like Snakemake's ``--configfile a.yaml b.yaml``
    (:func:`deep_merge`), e.g. an overlay such as ``config/bfshg-apply.yaml`` onto its base.
    """
    merged: dict[str, Any] = {}
    for path in paths:
        with open(path) as handle:
            merged = deep_merge(merged, yaml.safe_load(handle) or {})
    return validate_config(merged)
