"""The deformable methods by name, configured once: a registration run's deformable stage or method.

The configuration names a method (:data:`DEFORMABLE_METHODS`) and its keyword parameters;
:class:`DeformableStage` checks their names and values when it is built (the configuration is
read: a bad value stops ``snakemake -n``, not a registration job after hours of training), with
the method's own checks (:data:`PARAMETER_CHECKS`, which need no image and no slow import), and
passes them, with the run's seed where the method takes one, to every call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from comir.io import reject_unknown_keys
from comir.register.deformable.base import DeformableResult
from comir.register.deformable.bspline import bspline_register, check_bspline_params
from comir.register.deformable.demons import check_demons_params, demons_register
from comir.register.deformable.elastix_bspline import check_elastix_params, elastix_bspline_register

#: The deformable registration methods by their configuration name.
DEFORMABLE_METHODS: dict[str, Callable[..., DeformableResult]] = {
    "bspline": bspline_register,
    "demons": demons_register,
    "elastix_bspline": elastix_bspline_register,
}
#: Each method's check of its keyword parameters' values (all of them, ``seed`` included), as it runs them.
PARAMETER_CHECKS: dict[str, Callable[..., Any]] = {
    "bspline": check_bspline_params,
    "demons": check_demons_params,
    "elastix_bspline": check_elastix_params,
}
#: Each method's keyword parameters (``seed`` included) and their defaults, from its signature.
PARAMETER_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {p.name: p.default for p in inspect.signature(f).parameters.values() if p.kind is p.KEYWORD_ONLY}
    for name, f in DEFORMABLE_METHODS.items()
}
#: The deformable methods with a multimodal metric, for the original images; the others' metrics are
#: monomodal, for CoMIRs.
ORIGINAL_INPUT_METHODS = frozenset({"elastix_bspline"})


def parameter_names(method: str) -> list[str]:
    """The keyword parameters of deformable method ``method`` that a configuration may set (not ``seed``).

    Parameters
    ----------
    method : str
        A name of :data:`DEFORMABLE_METHODS`.

    Returns
    -------
    list of str
        Its keyword-only parameters other than ``seed``, in signature order.

    Raises
    ------
    KeyError
        If ``method`` is not a deformable method.
    """
    return [name for name in PARAMETER_DEFAULTS[method] if name != "seed"]


@dataclass(frozen=True)
class DeformableStage:
    """A deformable method with its parameters and seed: ``register(reference, floating, initial_matrix)``.

    Attributes
    ----------
    method : str
        A name of :data:`DEFORMABLE_METHODS`.
    params : Mapping
        Its keyword parameters (names and values checked here).
    seed : int
        The seed of the methods that sample (``seed`` is not a parameter).

    Raises
    ------
    ValueError
        For an unknown method or parameter name (listing the known ones), or a value the method
        rejects (:data:`PARAMETER_CHECKS`).
    """

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in DEFORMABLE_METHODS:
            raise ValueError(
                f"unknown deformable method {self.method!r}; known methods: {', '.join(sorted(DEFORMABLE_METHODS))}"
            )
        accepted = parameter_names(self.method)
        hint = " (the run's seed is passed on)" if "seed" in self.params and "seed" not in accepted else ""
        context = f" for deformable method {self.method!r}{hint}"
        reject_unknown_keys(self.params, accepted, "parameter(s)", context=context, listed="accepted")
        defaults = PARAMETER_DEFAULTS[self.method]
        seeded = {"seed": int(self.seed)} if "seed" in defaults else {}
        try:
            PARAMETER_CHECKS[self.method](**{**defaults, **self.params, **seeded})
        except (TypeError, ValueError) as error:  # TypeError: a value of the wrong type, e.g. a list for a number
            raise ValueError(f"deformable method {self.method!r}: {error}") from None

    @property
    def on_originals(self) -> bool:
        """Whether the method is meant for the original images (:data:`ORIGINAL_INPUT_METHODS`), not CoMIRs."""
        return self.method in ORIGINAL_INPUT_METHODS

    def register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        initial_matrix: np.ndarray | None = None,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> DeformableResult:
        """The method's result for one pair from ``initial_matrix`` (``None``: centre onto centre).

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` images with the same ``C``.
        initial_matrix : numpy.ndarray or None, optional
            The 2x3 floating -> reference start, e.g. a rigid method's result. Default None.
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Valid-pixel masks of the two images (``(H, W)``, non-zero = valid; each method's
            doc says how it honours them). Default None: every pixel.

        Returns
        -------
        DeformableResult
            The method's result (failed with the zero field for a pair it cannot register).

        Raises
        ------
        ValueError
            For malformed images or matrix, or a parameter value the method rejects.
        """
        function = DEFORMABLE_METHODS[self.method]
        seeded = {"seed": int(self.seed)} if "seed" in PARAMETER_DEFAULTS[self.method] else {}
        return function(reference, floating, initial_matrix, reference_mask, floating_mask, **self.params, **seeded)


__all__ = [
    "DEFORMABLE_METHODS",
    "ORIGINAL_INPUT_METHODS",
    "PARAMETER_CHECKS",
    "PARAMETER_DEFAULTS",
    "DeformableStage",
    "parameter_names",
]
