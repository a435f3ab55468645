"""elastix affine then B-spline: Mattes MI for originals, correlation for CoMIRs (:mod:`comir.register.deformable`)."""

from __future__ import annotations

import re

import numpy as np

from comir.deformation.affine import compose_affine
from comir.register.base import (
    RegistrationFailure,
    check_pair,
    fill_invalid,
    require_variation,
)
from comir.register.deformable.base import (
    DeformableResult,
    Masks,
    checked_seed,
    moved_mask,
    on_reference_grid,
    positive_float,
    positive_int,
    run_method,
)

#: The similarity metrics of :func:`elastix_parameter_maps`: their elastix names.
ELASTIX_METRICS = {"mattes_mi": "AdvancedMattesMutualInformation", "ncc": "AdvancedNormalizedCorrelation"}


def check_elastix_params(
    *,
    grid_spacing_px: float,
    resolutions: int,
    iterations: int,
    bins: int,
    spatial_samples: int,
    bending_weight: float,
    affine: bool,
    seed: int,
    metric: str,
) -> tuple[float, int, float, dict[str, tuple[str, ...]]]:
    """:func:`elastix_bspline_register`'s parameters checked, without elastix's slow import (at parse time too).

    Parameters
    ----------
    grid_spacing_px, resolutions, iterations, bins, spatial_samples, bending_weight, affine, seed, metric : Any
        :func:`elastix_bspline_register`'s parameters of these names.

    Returns
    -------
    tuple
        ``(grid spacing, resolutions, bending weight, settings)``: the settings are the entries that
        :func:`elastix_parameter_maps` writes into both maps.

    Raises
    ------
    ValueError
        For a setting outside its range (:func:`elastix_parameter_maps`).
    """
    if metric not in ELASTIX_METRICS:
        raise ValueError(f"metric must be one of {sorted(ELASTIX_METRICS)}, not {metric!r}")
    if not isinstance(affine, bool | np.bool_):
        raise ValueError(f"affine must be true or false, got {affine!r}")
    spacing = positive_float("grid_spacing_px", grid_spacing_px)
    resolutions = positive_int("resolutions", resolutions)
    settings = {
        "Metric": (ELASTIX_METRICS[metric],),
        "NumberOfResolutions": (str(resolutions),),
        "MaximumNumberOfIterations": (str(positive_int("iterations", iterations)),),
        "NumberOfHistogramBins": (str(positive_int("bins", bins, 4)),),
        "NumberOfSpatialSamples": (str(positive_int("spatial_samples", spatial_samples)),),
        "RandomSeed": (str(checked_seed(seed) % 2**32),),
        "WriteResultImage": ("false",),
    }
    return spacing, resolutions, positive_float("bending_weight", bending_weight, allow_zero=True), settings


def elastix_parameter_maps(
    grid_spacing_px: float = 32.0,
    resolutions: int = 3,
    iterations: int = 256,
    bins: int = 32,
    spatial_samples: int = 2048,
    bending_weight: float = 1.0,
    affine: bool = True,
    seed: int = 0,
    metric: str = "mattes_mi",
) -> list[dict[str, tuple[str, ...]]]:
    """The elastix parameter maps of :func:`elastix_bspline_register`: affine (optional), then B-spline.

    Each is elastix's default map (``GetDefaultParameterMap("affine")``, ``("bspline",
    resolutions, grid_spacing_px)``) with the similarity metric written out (``metric``: Mattes MI,
    elastix's default, or normalised correlation) and these settings:
    NumberOfResolutions, MaximumNumberOfIterations (per resolution), NumberOfHistogramBins,
    NumberOfSpatialSamples, RandomSeed, FinalGridSpacingInPhysicalUnits (B-spline; elastix's
    grid schedule 2, 1.41, 1 times it), WriteResultImage "false".  The B-spline map of elastix
    adds a TransformBendingEnergyPenalty to the metric; its weight is ``bending_weight`` (elastix's
    default 1), and 0 removes the penalty (plain MultiResolutionRegistration).

    Parameters
    ----------
    grid_spacing_px : float, optional
        FinalGridSpacingInPhysicalUnits of the B-spline, pixels (> 0). Default 32.
    resolutions : int, optional
        NumberOfResolutions of each stage (>= 1). Default 3.
    iterations : int, optional
        MaximumNumberOfIterations per resolution (>= 1). Default 256.
    bins : int, optional
        NumberOfHistogramBins of Mattes MI (>= 4). Default 32.
    spatial_samples : int, optional
        NumberOfSpatialSamples (>= 1). Default 2048.
    bending_weight : float, optional
        Weight of the bending-energy penalty (>= 0; 0: none). Default 1.
    affine : bool, optional
        Start with elastix's affine map. Default True.
    seed : int, optional
        RandomSeed (taken modulo 2**32). Default 0.
    metric : {"mattes_mi", "ncc"}, optional
        AdvancedMattesMutualInformation (two modalities; default) or AdvancedNormalizedCorrelation
        (one modality, such as two CoMIRs). ``bins`` only matters for Mattes MI.

    Returns
    -------
    list of dict
        Parameter maps in the order elastix runs them, values as tuples of strings.

    Raises
    ------
    ValueError
        For a setting outside its range.
    """
    from comir.register.elastix import load_itk  # itk with elastix loaded once per process (5-12 s)

    spacing, resolutions, weight, settings = check_elastix_params(
        grid_spacing_px=grid_spacing_px, resolutions=resolutions, iterations=iterations, bins=bins,
        spatial_samples=spatial_samples, bending_weight=bending_weight, affine=affine, seed=seed, metric=metric,
    )  # fmt: skip
    parameter_object = load_itk().ParameterObject.New()
    maps = []
    if affine:
        defaults = parameter_object.GetDefaultParameterMap("affine", resolutions)
        parameters = {key: tuple(defaults[key]) for key in defaults.keys()}
        parameters.update(settings)
        maps.append(dict(sorted(parameters.items())))
    defaults = parameter_object.GetDefaultParameterMap("bspline", resolutions, spacing)
    parameters = {key: tuple(defaults[key]) for key in defaults.keys()}
    parameters.update(settings)
    if weight > 0:
        parameters["Metric"] = (ELASTIX_METRICS[metric], "TransformBendingEnergyPenalty")
        parameters["Registration"] = ("MultiMetricMultiResolutionRegistration",)
        parameters["Metric0Weight"] = ("1.0",)
        parameters["Metric1Weight"] = (repr(weight),)
    else:
        parameters["Registration"] = ("MultiResolutionRegistration",)
        parameters.pop("Metric0Weight", None)
        parameters.pop("Metric1Weight", None)
    maps.append(dict(sorted(parameters.items())))
    return maps


def elastix_bspline_register(
    reference: np.ndarray,
    floating: np.ndarray,
    initial_matrix: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    floating_mask: np.ndarray | None = None,
    *,
    grid_spacing_px: float = 32.0,
    resolutions: int = 3,
    iterations: int = 256,
    bins: int = 32,
    spatial_samples: int = 2048,
    bending_weight: float = 1.0,
    affine: bool = True,
    seed: int = 0,
    metric: str = "mattes_mi",
) -> DeformableResult:
    """Affine then B-spline registration with elastix (itk-elastix), Mattes MI by default: the originals' baseline.

    The floating image is moved onto the reference grid by the initial matrix (cubic; its
    pixels outside the floating image set to the valid mean and excluded by elastix's moving
    mask), then elastix registers it to the reference with :func:`elastix_parameter_maps`, on
    one thread, logging into a temporary directory that is removed.  Transformix's deformation
    field of the result is the residual field; the total is
    :func:`comir.deformation.affine.compose_affine` of the matrix and the residual.  Each image is
    reduced to one channel by its own principal component (two modalities).

    Parameters
    ----------
    reference, floating : numpy.ndarray
        The pair (module doc).
    initial_matrix : numpy.ndarray, optional
        2x3 floating -> reference start; ``None`` (default): centre onto centre.
    reference_mask, floating_mask : numpy.ndarray, optional
        Valid-pixel masks (``(H, W)``, non-zero = valid): elastix's fixed mask, and its moving mask
        with the floating mask moved by the initial matrix. Default None: every pixel.
    grid_spacing_px : float, optional
        FinalGridSpacingInPhysicalUnits of the B-spline, pixels. Default 32.
    resolutions : int, optional
        NumberOfResolutions of each stage. Default 3.
    iterations : int, optional
        MaximumNumberOfIterations per resolution of each stage. Default 256.
    bins : int, optional
        NumberOfHistogramBins of Mattes MI (>= 4). Default 32.
    spatial_samples : int, optional
        NumberOfSpatialSamples, random reference pixels drawn anew every iteration. Default 2048.
    bending_weight : float, optional
        Weight of elastix's bending-energy penalty in the B-spline stage (0: none). Default 1.
    affine : bool, optional
        Run elastix's affine stage before the B-spline. Default True.
    seed : int, optional
        elastix's RandomSeed. Default 0.
    metric : {"mattes_mi", "ncc"}, optional
        The similarity metric (:func:`elastix_parameter_maps`): Mattes MI (default) between two
        modalities, normalised correlation between two CoMIRs.

    Returns
    -------
    DeformableResult
        ``metric``: elastix's final metric value of the last stage (its log); ``status="failed"``
        with elastix's reason explained (:func:`comir.register.elastix.explain_elastix_error`).

    Raises
    ------
    ValueError
        For malformed images, a malformed ``initial_matrix`` or a setting outside its range.
    """
    from comir.register.elastix import elastix_run, final_metric, itk_image, load_itk

    check_pair(reference, floating)  # malformed arguments first, before the slow import
    maps = elastix_parameter_maps(
        grid_spacing_px, resolutions, iterations, bins, spatial_samples, bending_weight, affine, seed, metric
    )
    itk = load_itk()  # outside the call's seconds, as in comir.register.elastix

    def body(ref: np.ndarray, flo: np.ndarray, matrix: np.ndarray, masks: Masks) -> tuple[np.ndarray, float, str]:
        moved, inside = on_reference_grid(flo, matrix, ref.shape, mode="constant")  # overlap: require_overlap
        if masks[1] is not None:
            inside &= moved_mask(masks[1], matrix, ref.shape)
            if not inside.any():
                raise RegistrationFailure("no valid floating pixel lies on the reference after the start")
        moved = fill_invalid(moved, inside)  # no edge from the outside into the pyramid's smoothing
        require_variation(ref if masks[0] is None else ref[masks[0]], moved[inside], (masks[0], inside))

        mask = None if inside.all() else inside
        with elastix_run((ref, moved), maps, (masks[0], mask)) as (method, log, folder):
            transformix = itk.TransformixFilter[itk.Image[itk.F, 2]].New()
            transformix.SetMovingImage(itk_image(moved.astype(np.float32)))
            transformix.SetTransformParameterObject(method.GetTransformParameterObject())
            transformix.SetComputeDeformationField(True)
            transformix.SetLogToConsole(False)
            transformix.SetNumberOfWorkUnits(1)
            # transformix also writes the field as deformationField.nii into its output directory
            # (the working directory by default): into the temporary one here.
            transformix.SetOutputDirectory(folder)
            transformix.UpdateLargestPossibleRegion()
            residual = np.array(itk.array_from_image(transformix.GetOutputDeformationField()), dtype=np.float64)
        stops = re.findall(r"Stopping condition: (.*)", log)
        stages = "affine + B-spline" if affine else "B-spline"
        note = f"elastix {stages}; {stops[-1].strip() if stops else 'no stop condition'}"
        return compose_affine(matrix, residual), final_metric(log), note

    return run_method(reference, floating, initial_matrix, False, body, (reference_mask, floating_mask))


__all__ = ["ELASTIX_METRICS", "check_elastix_params", "elastix_bspline_register", "elastix_parameter_maps"]
