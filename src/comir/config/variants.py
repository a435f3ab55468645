"""A dataset's variants: settings merged onto the dataset, where a variant's networks come from, ensembles.

Contract: :func:`deep_merge` merges mappings recursively (anything else is replaced);
:func:`variant_config` is a dataset as one variant runs it, with the schema's defaults filled into
what the variant adds. :func:`model_variant`, :func:`model_file`, :func:`ensemble_members` and
:func:`network_variants` say which networks a variant uses; :func:`ensemble_params` gives a
method's parameters for several networks' CoMIRs (:data:`ENSEMBLE_METHODS` only). Nothing here
validates: the configuration is one that :func:`comir.config.validate.validate_config` accepted.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

from comir.config.schema import Validator, load_schema

__all__ = [
    "ENSEMBLE_METHODS",
    "MODEL_SOURCES",
    "NETWORK_SETTINGS",
    "deep_merge",
    "ensemble_members",
    "ensemble_params",
    "model_file",
    "model_variant",
    "network_variants",
    "variant_config",
]


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in: mappings recursively, anything else (lists too) replaced.

    Parameters
    ----------
    base : Mapping[str, Any]
        The mapping merged onto (left unchanged).
    override : Mapping[str, Any]
        The values that win (left unchanged).

    Returns
    -------
    dict of str to Any
        A new mapping of deep copies.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# Variant keys that say where its networks come from instead of overriding the dataset's settings,
# and the settings a variant with either cannot override (they made the networks).
MODEL_SOURCES = ("model_from", "model_file")
NETWORK_SETTINGS = ("model", "training", "modalities")
#: The registration methods that run on an ensemble variant's CoMIRs (several networks' at once).
ENSEMBLE_METHODS = ("cascade",)


def ensemble_params(method: str, params: Mapping[str, Any] | None, networks: int) -> dict[str, Any] | None:
    """``params`` of ``method`` for ``networks`` networks' CoMIRs registered together (a copy).

    One network: the params as given.  Several: with ``networks`` (the cascade's option, section 12
    of docs/method.md) for a method of :data:`ENSEMBLE_METHODS`, None for any other method (it takes
    one network's CoMIRs); the callers say so in their own terms.

    Parameters
    ----------
    method : str
        The registration method.
    params : Mapping[str, Any] or None
        Its parameters (None: none).
    networks : int
        How many networks' CoMIRs are registered together.

    Returns
    -------
    dict of str to Any or None
        The parameters, or None when ``method`` cannot register several networks' CoMIRs.
    """
    params = dict(params or {})
    if networks == 1:
        return params
    return {**params, "networks": networks} if method in ENSEMBLE_METHODS else None


def variant_config(dataset: Mapping[str, Any], variant: str) -> dict[str, Any]:
    """A dataset's configuration as ``variant`` runs it (its overrides merged onto the dataset).

    The schema's defaults are filled into what the overrides add (e.g. an ``elastic`` section
    given only its ``probability``), as validation filled them into the dataset's own sections.

    Parameters
    ----------
    dataset : Mapping[str, Any]
        A validated dataset configuration (left unchanged).
    variant : str
        One of its variants. Its ``model_from``, ``model_file`` and ``ensemble`` are not merged.

    Returns
    -------
    dict of str to Any
        The merged configuration, without ``variants``.

    Raises
    ------
    KeyError
        If ``variant`` is not a variant of the dataset.
    """
    if variant not in dataset["variants"]:
        raise KeyError(f"unknown variant {variant!r}; this dataset has {', '.join(dataset['variants'])}")
    base = {key: value for key, value in dataset.items() if key != "variants"}
    not_merged = (*MODEL_SOURCES, "ensemble")
    overrides = {key: value for key, value in dataset["variants"][variant].items() if key not in not_merged}
    merged = deep_merge(base, overrides)
    for _ in Validator(_dataset_schema()).iter_errors(merged):  # fills defaults; problems were reported
        pass
    merged.pop("variants", None)  # a default the filling adds back: a variant has none
    return merged


@functools.cache
def _dataset_schema() -> dict[str, Any]:
    """The packaged schema's dataset node, as a schema of its own (read-only)."""
    schema = load_schema()
    return {"definitions": schema.get("definitions", {}), "$ref": "#/definitions/dataset"}


def model_variant(dataset: Mapping[str, Any], variant: str) -> str:
    """The variant whose trained networks ``variant`` uses: its ``model_from``, else itself.

    Parameters
    ----------
    dataset : Mapping[str, Any]
        A validated dataset configuration.
    variant : str
        One of its variants.

    Returns
    -------
    str
        The variant's name.
    """
    return dataset["variants"][variant].get("model_from", variant)


def model_file(dataset: Mapping[str, Any], variant: str) -> str | None:
    """The model file trained elsewhere that ``variant`` (or its ``model_from``) uses; None when it trains.

    Parameters
    ----------
    dataset : Mapping[str, Any]
        A validated dataset configuration.
    variant : str
        One of its variants.

    Returns
    -------
    str or None
        The ``model_file`` path as configured, or None.
    """
    return dataset["variants"][model_variant(dataset, variant)].get("model_file")


def ensemble_members(dataset: Mapping[str, Any], variant: str) -> list[str]:
    """The variants whose networks' CoMIRs ``variant`` registers together; empty when it has networks of its own.

    Parameters
    ----------
    dataset : Mapping[str, Any]
        A validated dataset configuration.
    variant : str
        One of its variants.

    Returns
    -------
    list of str
        The variant's ``ensemble``, in its order.
    """
    return list(dataset["variants"][variant].get("ensemble", []))


def network_variants(dataset: Mapping[str, Any]) -> list[str]:
    """A dataset's variants with networks of their own (trained, from another variant or a file): not ensembles.

    Parameters
    ----------
    dataset : Mapping[str, Any]
        A validated dataset configuration.

    Returns
    -------
    list of str
        The variants in configuration order.
    """
    return [variant for variant in dataset["variants"] if not ensemble_members(dataset, variant)]
