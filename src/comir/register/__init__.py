"""Registration methods behind one interface (rigid; similarity and affine where a method has ``transform``).

``make_method(name, params, seed)`` builds a method from the registry
:data:`METHODS`; every method has ``register(reference, floating) ->
RegistrationResult`` (see :mod:`comir.register.base`).  A method raises
:class:`RegistrationFailure` for a pair it cannot register (a ``failed`` row);
any other exception is a bug and stops the job (docs/method.md, section 7).

A registration run of the configuration may also be deformable (docs/explanation/deformable.md):
a deformable method on its own, or a deformable stage after its rigid method
(:func:`make_run`, :mod:`comir.register.deformable.stage`).

A method with a trained model of its own (:data:`MODEL_METHODS`: ACCR, docs/explanation/accr.md)
registers the networks' inputs, not CoMIRs; its class is imported only where one is made.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from os import PathLike
from typing import Any

from comir.geometry import check_transform
from comir.register.alpha_amd import AlphaAMDRegistration
from comir.register.base import (
    FAILED,
    OK,
    Registration,
    RegistrationFailure,
    RegistrationResult,
    RigidOnly,
    build_method,
    check_pair,
    check_param_names,
    param_names,
    set_native_threads,
    timed,
    to_single_channel,
)
from comir.register.cascade import CascadeRegistration
from comir.register.curvealign import CurveAlignRegistration
from comir.register.deformable.stage import DEFORMABLE_METHODS, DeformableStage
from comir.register.elastix import ElastixRegistration
from comir.register.fft_search import FFTSearchRegistration
from comir.register.mi import MutualInformationRegistration
from comir.register.sift import SiftRegistration, ransac_fit

METHODS: dict[str, type] = {
    SiftRegistration.name: SiftRegistration,
    MutualInformationRegistration.name: MutualInformationRegistration,
    AlphaAMDRegistration.name: AlphaAMDRegistration,
    FFTSearchRegistration.name: FFTSearchRegistration,
    CurveAlignRegistration.name: CurveAlignRegistration,
    CascadeRegistration.name: CascadeRegistration,
    ElastixRegistration.name: ElastixRegistration,
}
#: Methods with a trained model of their own, which register the networks' inputs (the original images
#: as the networks take them) instead of CoMIRs: each name's class as ``module:Class``, imported where
#: one is made (it reads its model with PyTorch, which the register environment lacks; the workflow
#: runs them in rule register_accr). Their job gives them :data:`JOB_PARAMS` (:func:`with_model`).
MODEL_METHODS: dict[str, str] = {"accr": "comir.register.accr:ACCRRegistration"}
#: The parameters of a model method that its job gives, never the configuration: the model file and
#: the reference image's modality slot.
JOB_PARAMS: tuple[str, ...] = ("model", "reference_slot")


def with_transform(params: Mapping[str, Any] | None, transform: str) -> dict[str, Any]:
    """A method's ``params`` with the transform model ``transform`` added (unless they set one).

    Rigid, every method's default, adds nothing, so that the rigid-only methods take it.

    Parameters
    ----------
    params : Mapping[str, Any] or None
        The method's parameters (None: none); not modified.
    transform : str
        One of :data:`comir.geometry.TRANSFORMS`.

    Returns
    -------
    dict
        A new parameter dict.

    Raises
    ------
    ValueError
        If ``transform`` is not a known transform model.
    """
    params = dict(params or {})
    if check_transform(transform) != "rigid":
        params.setdefault("transform", transform)
    return params


def make_method(name: str, params: Mapping[str, Any] | None, seed: int, threads: int = 1) -> Registration:
    """Instantiate the registration method ``name`` with ``params`` and ``seed``.

    Parameters
    ----------
    name : str
        A key of :data:`METHODS` or :data:`MODEL_METHODS` (with :func:`with_model`'s parameters).
    params : Mapping[str, Any] or None
        The method's parameters (its dataclass fields; None: all defaults). Never ``seed``.
    seed : int
        The method's random seed, passed separately from ``params`` (to methods that take one).
    threads : int, optional
        The job's thread count, given to methods that take one. Default 1.

    Returns
    -------
    Registration
        The method instance.

    Raises
    ------
    ValueError
        For an unknown method (listing the known ones), an unknown parameter key (naming it and
        listing the accepted ones), a ``transform`` for a rigid-only method (listing the methods
        that take one) or an invalid parameter value (:func:`comir.register.base.build_method`).
    """
    try:
        return build_method(method_class(name), params, seed, threads)
    except RigidOnly as error:
        models = sorted(n for n, c in METHODS.items() if "transform" in param_names(c))
        raise ValueError(f"{error}; similarity and affine transforms: {', '.join(models)}") from None


def method_class(name: str) -> type:
    """The class of registration method ``name``: :data:`METHODS`' or a model method's, imported now.

    Parameters
    ----------
    name : str
        A key of :data:`METHODS` or :data:`MODEL_METHODS`.

    Returns
    -------
    type
        The method's dataclass.

    Raises
    ------
    ValueError
        For an unknown method, listing the known ones.
    """
    if name in METHODS:
        return METHODS[name]
    if name not in MODEL_METHODS:
        known = ", ".join(sorted([*METHODS, *MODEL_METHODS]))
        raise ValueError(f"unknown registration method {name!r}; known methods: {known}")
    module, _, attribute = MODEL_METHODS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def with_model(params: Mapping[str, Any] | None, model: str | PathLike[str], reference_slot: str) -> dict[str, Any]:
    """A model method's ``params`` with what its job gives (:data:`JOB_PARAMS`).

    Parameters
    ----------
    params : Mapping[str, Any] or None
        The method's configured parameters (None: none); not modified.
    model : str or os.PathLike
        Its model file.
    reference_slot : str
        The reference image's modality slot (``A`` or ``B``).

    Returns
    -------
    dict
        A new parameter dict.
    """
    return {**dict(params or {}), "model": str(model), "reference_slot": reference_slot}


def check_model_params(name: str, params: Mapping[str, Any] | None) -> None:
    """Stop at a configured parameter that model method ``name`` does not take from the configuration.

    Its names only: the values are checked when the job makes the method, with its model file
    (which the workflow writes after the configuration is read).

    Parameters
    ----------
    name : str
        A key of :data:`MODEL_METHODS`.
    params : Mapping[str, Any] or None
        The configured parameters.

    Raises
    ------
    ValueError
        For an unknown name or one of :data:`JOB_PARAMS`, listing the accepted ones.
    """
    accepted = [key for key in param_names(method_class(name)) if key not in JOB_PARAMS]
    check_param_names(name, params or {}, accepted)


def uses_originals(name: str, params: Mapping[str, Any] | None) -> bool:
    """Whether method ``name`` with ``params`` registers CoMIRs with the original images besides.

    Such a method (``wants_originals``, e.g. the cascade with
    ``original_keypoints``) gets them as ``register(..., originals=(reference,
    floating))`` on the CoMIRs' grids; a deformable method never does.

    Parameters
    ----------
    name : str
        A registration method: a key of :data:`METHODS` or a deformable method.
    params : Mapping[str, Any] or None
        Its parameters.

    Returns
    -------
    bool
        The method's ``wants_originals``, False when it has none.

    Raises
    ------
    ValueError
        As :func:`make_method`, for a rigid method ``name`` or ``params`` it rejects.
    """
    if name in DEFORMABLE_METHODS or name in MODEL_METHODS:
        return False
    return bool(getattr(make_method(name, params, seed=0), "wants_originals", False))


def registers_deformably(run: Mapping[str, Any]) -> bool:
    """Whether a configured registration run gives a displacement field: a deformable method or stage.

    Parameters
    ----------
    run : Mapping[str, Any]
        The run's configuration: its ``method`` and optional ``deformable`` stage.

    Returns
    -------
    bool
        True for a deformable method or a run with a ``deformable`` stage that is not None.
    """
    return run["method"] in DEFORMABLE_METHODS or run.get("deformable") is not None


def make_run(
    run: Mapping[str, Any], seed: int, threads: int = 1
) -> tuple[Registration | None, DeformableStage | None]:
    """A configured registration run's rigid method and deformable stage; either may be ``None``, not both.

    A deformable method is the run's only stage (from the start of the rigid methods, centre onto
    centre); a rigid method may be followed by a ``deformable`` stage.

    Parameters
    ----------
    run : Mapping[str, Any]
        Its ``method``, ``params`` and optional ``deformable`` (``method``, ``params``).
    seed : int
        The random seed of the method and the stage.
    threads : int, optional
        The job's thread count, for a rigid method that takes one. Default 1.

    Returns
    -------
    tuple of (Registration or None, DeformableStage or None)
        The rigid method and the deformable stage.

    Raises
    ------
    ValueError
        As :func:`make_method` and :class:`~comir.register.deformable.stage.DeformableStage` do,
        and for a deformable stage after a deformable method.
    """
    name, params, stage = run["method"], run.get("params"), run.get("deformable")
    if name in DEFORMABLE_METHODS:
        if stage is not None:
            raise ValueError(f"{name!r} registers deformably on its own: give no deformable stage after it")
        return None, DeformableStage(name, dict(params or {}), seed)
    return make_method(name, params, seed, threads), deformable_stage(stage, seed)


def deformable_stage(spec: Mapping[str, Any] | None, seed: int) -> DeformableStage | None:
    """The deformable stage of a configured ``deformable`` section (``method``, optional ``params``); None for None.

    Parameters
    ----------
    spec : Mapping[str, Any] or None
        The section: a method of :data:`DEFORMABLE_METHODS` and its parameters (further keys, such as
        the workflow's ``save_fields``, are not the stage's).
    seed : int
        The stage's seed.

    Returns
    -------
    DeformableStage or None
        The stage; None without a section.

    Raises
    ------
    ValueError
        For an unknown method or parameter name (:class:`~comir.register.deformable.stage.DeformableStage`).
    """
    if spec is None:
        return None
    return DeformableStage(spec["method"], dict(spec.get("params") or {}), seed)


__all__ = [
    "AlphaAMDRegistration",
    "CascadeRegistration",
    "CurveAlignRegistration",
    "DEFORMABLE_METHODS",
    "DeformableStage",
    "ElastixRegistration",
    "FFTSearchRegistration",
    "FAILED",
    "JOB_PARAMS",
    "METHODS",
    "MODEL_METHODS",
    "OK",
    "MutualInformationRegistration",
    "Registration",
    "RegistrationFailure",
    "RegistrationResult",
    "SiftRegistration",
    "check_model_params",
    "check_pair",
    "deformable_stage",
    "make_method",
    "method_class",
    "make_run",
    "ransac_fit",
    "registers_deformably",
    "set_native_threads",
    "timed",
    "to_single_channel",
    "uses_originals",
    "with_model",
    "with_transform",
]
