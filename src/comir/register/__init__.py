"""Registration methods behind one interface (rigid; similarity and affine where a method has ``transform``).

``make_method(name, params, seed)`` builds a method from the registry
:data:`METHODS`; every method has ``register(reference, floating) ->
RegistrationResult`` (see :mod:`comir.register.base`).  A method raises
:class:`RegistrationFailure` for a pair it cannot register (a ``failed`` row);
any other exception is a bug and stops the job (docs/method.md, section 7).

A registration run of the configuration may also be deformable (docs/explanation/deformable.md):
a deformable method on its own, or a deformable stage after its rigid method
(:func:`make_run`, :mod:`comir.register.deformable.stage`).
"""

from __future__ import annotations

from collections.abc import Mapping
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


def with_transform(params: Mapping[str, Any] | None, transform: str) -> dict[str, Any]:
    """A method's ``params`` with the transform model ``transform`` added (unless they set one).

    Rigid, every method's default, adds nothing, so that the rigid-only methods take it.
    """
    params = dict(params or {})
    if check_transform(transform) != "rigid":
        params.setdefault("transform", transform)
    return params


def make_method(name: str, params: Mapping[str, Any] | None, seed: int, threads: int = 1) -> Registration:
    """Instantiate the registration method ``name`` with ``params`` and ``seed``.

    Raises :class:`ValueError` for an unknown method (listing the known ones),
    an unknown parameter key (naming it and listing the accepted ones) or an
    invalid parameter value (:func:`comir.register.base.build_method`).
    ``seed`` is passed separately, never in ``params``; ``threads`` (the job's
    thread count) goes to methods that take one.
    """
    if name not in METHODS:
        raise ValueError(f"unknown registration method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    try:
        return build_method(METHODS[name], params, seed, threads)
    except RigidOnly as error:
        models = sorted(n for n, c in METHODS.items() if "transform" in param_names(c))
        raise ValueError(f"{error}; similarity and affine transforms: {', '.join(models)}") from None


def uses_originals(name: str, params: Mapping[str, Any] | None) -> bool:
    """Whether method ``name`` with ``params`` registers CoMIRs with the original images besides.

    Such a method (``wants_originals``, e.g. the cascade with
    ``original_keypoints``) gets them as ``register(..., originals=(reference,
    floating))`` on the CoMIRs' grids; a deformable method never does.
    """
    if name in DEFORMABLE_METHODS:
        return False
    return bool(getattr(make_method(name, params, seed=0), "wants_originals", False))


def registers_deformably(run: Mapping[str, Any]) -> bool:
    """Whether a configured registration run gives a displacement field: a deformable method or stage."""
    return run["method"] in DEFORMABLE_METHODS or run.get("deformable") is not None


def make_run(
    run: Mapping[str, Any], seed: int, threads: int = 1
) -> tuple[Registration | None, DeformableStage | None]:
    """A configured registration run's rigid method and deformable stage; either may be ``None``, not both.

    ``run``: its ``method``, ``params`` and optional ``deformable`` (``method``, ``params``). A
    deformable method is the run's only stage (from the start of the rigid methods, centre onto
    centre); a rigid method may be followed by a ``deformable`` stage.

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
    rigid = make_method(name, params, seed, threads)
    return rigid, None if stage is None else DeformableStage(stage["method"], dict(stage.get("params") or {}), seed)


__all__ = [
    "AlphaAMDRegistration",
    "CascadeRegistration",
    "CurveAlignRegistration",
    "DEFORMABLE_METHODS",
    "DeformableStage",
    "ElastixRegistration",
    "FFTSearchRegistration",
    "FAILED",
    "METHODS",
    "OK",
    "MutualInformationRegistration",
    "Registration",
    "RegistrationFailure",
    "RegistrationResult",
    "SiftRegistration",
    "check_pair",
    "make_method",
    "make_run",
    "ransac_fit",
    "registers_deformably",
    "set_native_threads",
    "timed",
    "to_single_channel",
    "uses_originals",
    "with_transform",
]
