"""Registration methods behind one interface (rigid; similarity and affine where a method has ``transform``).

``make_method(name, params, seed)`` builds a method from the registry
:data:`METHODS`; every method has ``register(reference, floating) ->
RegistrationResult`` (see :mod:`comir.register.base`).  A method raises
:class:`RegistrationFailure` for a pair it cannot register (a ``failed`` row);
any other exception is a bug and stops the job (docs/method.md, section 7).
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
    floating))`` on the CoMIRs' grids.
    """
    return bool(getattr(make_method(name, params, seed=0), "wants_originals", False))


__all__ = [
    "AlphaAMDRegistration",
    "CascadeRegistration",
    "CurveAlignRegistration",
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
    "ransac_fit",
    "set_native_threads",
    "timed",
    "to_single_channel",
    "uses_originals",
    "with_transform",
]
