"""elastix (itk-elastix) as a registration method: known transforms, seeds, masks, failures, parameters.

The pairs are those of the other method tests (:mod:`helpers.registration_cases`, 256 px: elastix's cost
is its samples and iterations, ~0.5 s a pair, hardly the image size). The first registration of
the session pays the import of itk and its elastix module (5-12 s).
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from comir import geometry as g
from comir.register import METHODS, ElastixRegistration, make_method
from comir.register import elastix as elastix_module
from comir.register.elastix import explain_elastix_error, final_metric
from helpers.registration_cases import SOURCE, crop_pair, make_pair, pair_error, texture

# The map elastix gets, beyond the values read from itk-elastix's default map (see the module doc).
EXPECTED_MAP = {
    "AutomaticParameterEstimation": ("true",),
    "AutomaticScalesEstimation": ("true",),
    "AutomaticTransformInitialization": ("false",),
    "CheckNumberOfSamples": ("true",),
    "DefaultPixelValue": ("0",),
    "FinalBSplineInterpolationOrder": ("3",),
    "FixedImagePyramid": ("FixedSmoothingImagePyramid",),
    "ImageSampler": ("RandomCoordinate",),
    "Interpolator": ("LinearInterpolator",),
    "MaximumNumberOfIterations": ("256",),
    "MaximumNumberOfSamplingAttempts": ("8",),
    "Metric": ("AdvancedMattesMutualInformation",),
    "MovingImagePyramid": ("MovingSmoothingImagePyramid",),
    "NewSamplesEveryIteration": ("true",),
    "NumberOfHistogramBins": ("32",),
    "NumberOfResolutions": ("4",),
    "NumberOfSamplesForExactGradient": ("4096",),
    "NumberOfSpatialSamples": ("2048",),
    "Optimizer": ("AdaptiveStochasticGradientDescent",),
    "RandomSeed": ("0",),
    "Registration": ("MultiResolutionRegistration",),
    "ResampleInterpolator": ("FinalBSplineInterpolator",),
    "Resampler": ("DefaultResampler",),
    "ResultImageFormat": ("nii",),
    "Transform": ("EulerTransform",),
    "WriteIterationInfo": ("false",),
    "WriteResultImage": ("false",),
}


def register(reference, floating, params=None, seed=0, **masks):
    return make_method("elastix", params or {}, seed).register(reference, floating, **masks)


def assert_exactly_rigid(matrix: np.ndarray) -> None:
    linear = np.asarray(matrix)[:, :2]
    np.testing.assert_allclose(linear @ linear.T, np.eye(2), atol=1e-12)
    assert np.linalg.det(linear) == pytest.approx(1.0, abs=1e-12)


def remapped(image: np.ndarray) -> np.ndarray:
    """Another "modality": a non-monotonic remapping of the intensities (MI's case, not correlation's)."""
    return np.sin(2.5 * np.asarray(image)).astype(np.float32)


def test_the_method_is_registered_and_itk_imported_only_when_it_registers():
    assert METHODS["elastix"] is ElastixRegistration
    method = make_method("elastix", {"transform": "affine", "iterations": 100}, seed=7, threads=3)
    assert isinstance(method, ElastixRegistration)
    assert (method.transform, method.iterations, method.seed, method.threads) == ("affine", 100, 7, 3)
    code = "import sys, comir.register; assert 'itk' not in sys.modules, 'itk imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_parameter_map_is_elastix_default_with_the_settings():
    assert ElastixRegistration().parameter_map() == EXPECTED_MAP
    custom = ElastixRegistration(transform="affine", resolutions=3, iterations=100, bins=64, spatial_samples=512,
                                 seed=2**32 + 5).parameter_map()
    changed = {key: value for key, value in custom.items() if EXPECTED_MAP.get(key) != value}
    assert changed == {
        "Transform": ("AffineTransform",),
        "NumberOfResolutions": ("3",),
        "MaximumNumberOfIterations": ("100",),
        "NumberOfHistogramBins": ("64",),
        "NumberOfSpatialSamples": ("512",),
        "RandomSeed": ("5",),
    }
    assert ElastixRegistration(transform="similarity").parameter_map()["Transform"] == ("SimilarityTransform",)


@pytest.mark.parametrize("modality", ["same", "inverted", "remapped", "rgb"])
def test_recovers_a_known_rigid_transform(modality):
    reference, floating, truth = make_pair(12.0, (6.0, -4.0))
    if modality == "inverted":
        floating = (1.0 - floating).astype(np.float32)
    elif modality == "remapped":
        floating = remapped(floating)
    elif modality == "rgb":  # one channel each by PCA
        reference = np.dstack([reference, 1 - reference, reference**2])
        floating = np.dstack([floating, 1 - floating, floating**2])
    result = register(reference, floating)
    assert result.ok, result.message
    assert pair_error(result.matrix, truth, floating) < 0.5
    assert_exactly_rigid(result.matrix)
    assert math.isfinite(result.metric) and result.metric < 0  # elastix's Mattes MI: negative, lower is better
    assert "EulerTransform" in result.message and result.seconds > 0


def test_floating_image_of_another_size_starts_centre_on_centre():
    reference, floating, truth = make_pair(8.0, (5.0, 3.0), floating_box=(140, 150, 220, 200))
    assert floating.shape == (200, 220)
    result = register(reference, floating)
    assert result.ok, result.message
    assert pair_error(result.matrix, truth, floating) < 0.5


@pytest.mark.parametrize(
    ("kind", "linear"),
    [
        ("similarity", 1.08 * g.rigid_matrix(math.radians(4.0), 0, 0)[:, :2]),
        ("affine", np.array([[1.06, 0.12], [-0.05, 0.93]]) @ g.rigid_matrix(math.radians(12.0), 0, 0)[:, :2]),
    ],
)
def test_recovers_known_similarity_and_affine_transforms(kind, linear):
    source = texture(SOURCE, 0)
    reference, floating, truth = crop_pair(source, source, 0.0, (7.0, -5.0), linear=linear)
    result = register(reference, floating, {"transform": kind})
    assert result.ok, result.message
    assert pair_error(result.matrix, truth, floating) < 0.5
    if kind == "similarity":
        exact = g.nearest_transform("similarity", result.matrix, g.image_center(floating.shape))
        np.testing.assert_allclose(result.matrix, exact, atol=1e-9)
    rigid = register(reference, floating)
    assert pair_error(rigid.matrix, truth, floating) > 2.0  # the scale or shear matters


def test_an_identical_pair_stays_at_the_identity():
    reference, _, _ = make_pair(0.0, (0.0, 0.0))
    result = register(reference, reference)
    assert result.ok, result.message
    assert pair_error(result.matrix, g.IDENTITY, reference) < 0.05


def test_the_same_seed_gives_the_same_matrix_and_another_seed_another():
    reference, floating, _ = make_pair(-9.0, (-5.0, 7.0), seed=1)
    first = register(reference, floating, seed=3)
    again = make_method("elastix", {}, 3, threads=2).register(reference, floating)  # threads: not elastix's
    other = register(reference, floating, seed=4)
    assert first.ok and again.ok and other.ok
    assert pair_error(again.matrix, first.matrix, floating) < 1e-6
    assert again.metric == first.metric
    assert pair_error(other.matrix, first.matrix, floating) > 1e-6  # the seed reaches elastix's sampler


@pytest.mark.parametrize("role", ["reference", "floating"])
def test_a_constant_image_is_a_failure_not_a_crash(role):
    reference, floating, _ = make_pair(5.0, (3.0, 2.0))
    if role == "reference":
        reference = np.full_like(reference, 0.4)
    else:
        floating = np.zeros_like(floating)
    result = register(reference, floating)
    assert result.status == "failed"
    np.testing.assert_array_equal(result.matrix, g.IDENTITY)
    assert f"the {role} image has no intensity variation" in result.message


def test_no_overlap_is_a_failure_with_elastix_reason_and_nothing_is_printed_or_left(capfd, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    reference, floating, _ = make_pair(5.0, (3.0, 2.0))
    left = np.zeros(reference.shape, bool)
    left[:, :100] = True
    result = register(reference, floating, reference_mask=left, floating_mask=~left)
    assert result.status == "failed"
    assert result.message.startswith("the reference and the transformed floating image do not overlap")
    assert "(elastix: AdvancedMattesMutualInformationMetric: Too many samples map outside moving image buffer" in (
        result.message
    )
    assert register(reference, floating).ok
    assert capfd.readouterr() == ("", "")  # elastix's log went to a temporary folder, not the console
    assert list(tmp_path.rglob("*")) == [tmp_path / "tmp"]  # and that folder is gone


def test_an_image_too_small_for_the_pyramid_is_a_failure():
    reference, floating, _ = make_pair(5.0, (3.0, 2.0))
    result = register(reference[:2], floating[:2])
    assert result.status == "failed"
    assert result.message.startswith("an image is too small for elastix's Gaussian pyramid")
    assert "(elastix: RecursiveGaussianImageFilter: The number of pixels along direction 1 is less than 4" in (
        result.message
    )


def test_masks_keep_a_bright_invalid_region_from_deciding_the_match():
    reference, floating, truth = make_pair(8.0, (6.0, -4.0))
    band = np.zeros(reference.shape, bool)
    band[:, :90] = True  # the same place in both frames: a bright label, an out-of-field area
    reference, floating = reference.copy(), floating.copy()
    reference[band] = 5.0
    floating[band] = 5.0
    unmasked = register(reference, floating)
    assert not unmasked.ok or pair_error(unmasked.matrix, truth, floating) > 2.0
    masked = register(reference, floating, reference_mask=~band, floating_mask=~band)
    assert masked.ok, masked.message
    assert pair_error(masked.matrix, truth, floating) < 0.5


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"iteration": 10}, r"unknown parameter\(s\) 'iteration'.*accepted: transform, resolutions, iterations"),
        ({"transform": "projective"}, "transform must be one of rigid, similarity, affine"),
        ({"resolutions": 0}, "resolutions must be an integer >= 1, got 0"),
        ({"iterations": 2.5}, "iterations must be an integer >= 1, got 2.5"),
        ({"bins": 2}, "bins must be an integer >= 4, got 2"),
        ({"spatial_samples": True}, "spatial_samples must be an integer >= 1, got True"),
        ({"threads": 0}, "threads must be an integer >= 1, got 0"),
        ({"seed": 1}, "pass the seed as make_method's seed argument"),
    ],
)
def test_bad_parameters_are_value_errors(params, message):
    with pytest.raises(ValueError, match=message):
        make_method("elastix", params, seed=0)


def test_a_bug_inside_propagates(monkeypatch):
    reference, floating, _ = make_pair(5.0, (3.0, 2.0))

    def broken(*args, **kwargs):
        raise TypeError("a bug inside the method")

    monkeypatch.setattr(elastix_module, "floating_to_reference", broken)
    with pytest.raises(TypeError, match="a bug inside"):
        register(reference, floating)


def test_the_reason_and_the_metric_are_read_from_elastix_log():
    log = (
        "Final metric value  = -1.78251\n"
        "itk::ExceptionObject (0x55)\nLocation: \"ElastixTemplate - Run()\"\nFile: /x/itkComputeJacobianTerms.hxx\n"
        "Line: 484\nDescription: ITK ERROR: ComputeJacobianTerms(0x5579e8c31fa0): No valid voxels (0/1000) found "
        "to estimate the AdaptiveStochasticGradientDescent parameters.\n\nError occurred during actual registration.\n"
    )
    assert final_metric(log) == -1.78251 and math.isnan(final_metric("no metric here"))
    explained = explain_elastix_error(log, "Internal elastix error: See elastix log")
    assert explained.startswith("too few valid pixels to sample")
    assert explained.endswith("(elastix: ComputeJacobianTerms: No valid voxels (0/1000) found to estimate the "
                              "AdaptiveStochasticGradientDescent parameters.)")
    error = "/a/b/itkElastixRegistrationMethod.hxx:389: ITK ERROR: Something(0x1): odd"
    assert explain_elastix_error("", error) == "elastix: ITK ERROR: Something(0x1): odd"


def test_the_module_doc_states_the_parameter_map():
    doc = elastix_module.__doc__
    for key, (value,) in EXPECTED_MAP.items():
        shown = value if value.lstrip("-").isdigit() else f'"{value}"'
        if key == "RandomSeed":
            shown = "<seed>"
        assert f"({key} {shown})" in doc, key
    assert Path(elastix_module.__file__).name == "elastix.py"
