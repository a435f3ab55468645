"""The cascade registration: global search + keypoints, refined, chosen by the CoMIRs' correlation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from comir import geometry as g
from comir.register import make_method
from comir.register.cascade import CascadeRegistration
from comir.register.fft_search import overlap_ncc
from helpers.registration_cases import make_pair
from helpers.registration_cases import pair_error as error


def test_recovers_a_known_transform_and_logs_every_candidate():
    reference, floating, truth = make_pair(37.0, (9.0, -6.0))
    result = make_method("cascade", {}, seed=0).register(reference, floating)
    assert result.ok, result.message
    assert error(result.matrix, truth, floating) < 1.0
    for label in ("fft ", "sift ", "fft+ecc ", "sift+ecc ", "kept "):
        assert label in result.message, result.message
    assert 0.95 < result.metric <= 1.0  # the kept candidate's correlation


def test_the_global_search_carries_a_pair_without_keypoints():
    """Strong blur leaves SIFT no keypoints in the paper's octaves; the FFT search still registers it."""
    reference, floating, truth = make_pair(25.0, (6.0, -4.0))
    reference, floating = (ndimage.gaussian_filter(im, 8).astype(np.float32) for im in (reference, floating))
    sift = make_method("sift", {}, seed=0).register(reference, floating)
    assert not sift.ok
    result = make_method("cascade", {}, seed=0).register(reference, floating)
    assert result.ok, result.message
    assert "sift failed" in result.message
    assert error(result.matrix, truth, floating) < 1.0


@pytest.mark.parametrize("refine", ["ecc", "mi", "none"])
def test_the_score_rejects_a_wrong_candidate(refine):
    """A global search confined to 0 deg finds a wrong optimum for a 40 deg pair; SIFT's candidate must win."""
    reference, floating, truth = make_pair(40.0, (5.0, 3.0))
    confined = make_method("fft_search", {"angle_range_deg": 0}, seed=0).register(reference, floating)
    assert confined.ok and error(confined.matrix, truth, floating) > 20.0  # the wrong candidate exists
    method = make_method("cascade", {"global_search": {"angle_range_deg": 0}, "refine": refine}, seed=0)
    result = method.register(reference, floating)
    assert result.ok, result.message
    assert result.message.split("kept ")[-1].startswith("sift"), result.message
    assert error(result.matrix, truth, floating) < 1.0
    # The choice is the correlation: the kept one scores above the wrong one.
    wrong = overlap_ncc(reference, floating, confined.matrix, 1)
    assert result.metric > wrong + 0.1


def test_stages_can_be_switched_off_and_a_low_quality_is_a_failure():
    reference, floating, truth = make_pair(15.0, (4.0, 2.0))
    # The true pair's global search over +-30 deg (its rotation, 15 deg, inside: the same result as over the
    # whole circle, a sixth of the angles); the unrelated pair's over all angles, its best chance of a high quality.
    near = {"global_search": {"angle_range_deg": 30}}
    only_sift = make_method("cascade", {"global_search": None, "refine": "none"}, seed=0).register(reference, floating)
    assert only_sift.ok and "fft" not in only_sift.message and "kept sift" in only_sift.message
    only_fft = make_method("cascade", {**near, "keypoints": None}, seed=0).register(reference, floating)
    assert only_fft.ok and "sift" not in only_fft.message
    demanding = make_method("cascade", {**near, "min_quality": 1.0}, seed=0).register(reference, floating)
    assert demanding.status == "failed" and "min_quality" in demanding.message
    np.testing.assert_array_equal(demanding.matrix, g.IDENTITY)
    # Different images: whatever is kept correlates far less than the true pair; a bar fails it.
    other, _, _ = make_pair(0.0, (0.0, 0.0), seed=9)
    true_quality = make_method("cascade", near, seed=0).register(reference, floating).metric
    unrelated = make_method("cascade", {}, seed=0).register(other, floating)
    assert unrelated.metric < true_quality - 0.2
    barred = make_method("cascade", {"min_quality": 0.8}, seed=0).register(other, floating)
    assert barred.status == "failed" and "min_quality" in barred.message


def test_a_pair_every_stage_fails_on_is_a_failure_saying_why():
    flat = np.zeros((64, 64), np.float32)
    flat[20:40, 20:40] = 1.0
    result = make_method("cascade", {}, seed=0).register(np.ones((64, 64), np.float32), flat)
    assert result.status == "failed" and result.message.startswith("every stage failed: ")
    assert "fft failed" in result.message and "sift failed" in result.message


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"global_search": None, "keypoints": None}, "at least one"),
        ({"refine": "amd"}, "refine"),
        ({"refine_params": {"iterations": 5, "eps": 1}}, r"refine_params key\(s\) 'eps' for ecc; known: iterations"),
        ({"refine": "none", "refine_params": {"iterations": 5}}, "none"),
        ({"refine": "mi", "refine_params": {"bins": 1}}, "bins"),
        ({"global_search": {"angle_step": 3}}, "angle_step"),
        ({"keypoints": {"preset": "fiji"}}, "preset"),
        ({"keypoints": [1, 2]}, "mapping"),
        ({"min_quality": 2.0}, "min_quality"),
    ],
)
def test_bad_parameters_are_configuration_errors(params, match):
    with pytest.raises(ValueError, match=match):
        make_method("cascade", params, seed=0)


def test_multichannel_comirs_are_scored_on_the_reference_basis():
    reference, floating, truth = make_pair(-20.0, (3.0, 7.0))
    weights = np.array([0.8, -0.3], dtype=np.float32)
    ref2, flo2 = (np.ascontiguousarray(im[..., None] * weights) for im in (reference, floating))
    result = CascadeRegistration().register(ref2, flo2)
    assert result.ok, result.message
    assert error(result.matrix, truth, floating) < 1.0


def test_keypoints_on_the_originals_are_a_candidate_scored_on_the_comirs():
    """The originals' SIFT candidate carries a pair, chosen by the CoMIRs' correlation.

    The CoMIRs are too blurred for keypoints and the global search is confined to a wrong angle.
    """
    reference, floating, truth = make_pair(40.0, (5.0, 3.0))
    comirs = [ndimage.gaussian_filter(im, 8).astype(np.float32) for im in (reference, floating)]
    rgb_reference = np.ascontiguousarray(reference[..., None] * np.array([0.5, 0.3, 0.2], np.float32))
    params = {"global_search": {"angle_range_deg": 0}}
    without = make_method("cascade", params, seed=0).register(*comirs)
    assert error(without.matrix, truth, floating) > 20.0  # no CoMIR candidate is right
    method = make_method("cascade", {**params, "original_keypoints": {}}, seed=0)
    assert method.wants_originals and not make_method("cascade", params, seed=0).wants_originals
    result = method.register(*comirs, originals=(rgb_reference, floating))  # one RGB, one grey modality
    assert result.ok, result.message
    assert "sift-original " in result.message and result.message.split("kept ")[-1].startswith("sift-original")
    assert error(result.matrix, truth, floating) < 1.0
    assert result.metric > without.metric


def test_keypoints_on_the_originals_need_the_originals_on_the_comirs_grid():
    reference, floating, _ = make_pair(10.0, (2.0, 1.0))
    method = make_method("cascade", {"original_keypoints": {"max_error_px": 4}}, seed=0)
    with pytest.raises(ValueError, match="no originals"):
        method.register(reference, floating)
    with pytest.raises(ValueError, match="original floating image"):
        method.register(reference, floating, originals=(reference, floating[:-1]))
    with pytest.raises(ValueError, match="preset"):
        make_method("cascade", {"original_keypoints": {"preset": "fiji"}}, seed=0)


def test_the_originals_candidate_is_kept_where_it_is_the_same_alignment_as_the_best():
    """Blurred CoMIRs and sharp originals: the originals' keypoints are the result where they agree.

    Agree: within prefer_originals_px of the best score's candidate; SIFT on the originals alone gives the same matrix.
    """
    reference, floating, truth = make_pair(25.0, (6.0, -4.0))
    comirs = [ndimage.gaussian_filter(im, 3).astype(np.float32) for im in (reference, floating)]
    sift = make_method("sift", {}, seed=0).register(reference, floating)
    method = make_method("cascade", {"original_keypoints": {}}, seed=0)
    result = method.register(*comirs, originals=(reference, floating))
    assert result.ok and "; kept sift-original (within 1 px of " in result.message, result.message
    np.testing.assert_allclose(result.matrix, sift.matrix)
    assert error(result.matrix, truth, floating) < 0.5
    by_score = make_method("cascade", {"original_keypoints": {}, "prefer_originals_px": 0}, seed=0)
    assert "within" not in by_score.register(*comirs, originals=(reference, floating)).message
    with pytest.raises(ValueError, match="prefer_originals_px"):
        make_method("cascade", {"prefer_originals_px": -1}, seed=0)


def test_several_networks_each_give_candidates_scored_on_every_networks_comirs():
    """Each network's CoMIRs give candidates; every candidate is scored on both networks' CoMIRs.

    Network 1's CoMIRs lead its stages astray (blurred: no keypoints; search confined to 0 deg);
    network 2's carry the pair. A candidate's quality is the mean of its scores on both.
    """
    reference, floating, truth = make_pair(40.0, (5.0, 3.0))
    blurred = [ndimage.gaussian_filter(im, 8).astype(np.float32) for im in (reference, floating)]
    stacked = [np.stack([b, im], axis=2) for b, im in zip(blurred, (reference, floating), strict=True)]
    params = {"global_search": {"angle_range_deg": 0}, "smooth_sigma": 0.0, "refine": "none"}
    alone = make_method("cascade", params, seed=0).register(*blurred)
    assert error(alone.matrix, truth, floating) > 20.0  # network 1 alone is wrong
    result = make_method("cascade", {**params, "networks": 2}, seed=0).register(*stacked)
    assert result.ok, result.message
    for label in ("fft@1 ", "sift@1 failed", "fft@2 ", "sift@2 ", "kept "):
        assert label in result.message, result.message
    assert result.message.split("kept ")[-1].endswith("@2"), result.message
    assert error(result.matrix, truth, floating) < 1.0
    each = [overlap_ncc(*pair, result.matrix, 1) for pair in (blurred, (reference, floating))]
    assert result.metric == pytest.approx(np.mean(each), abs=1e-6)


def test_several_networks_refine_the_originals_candidate_on_each_and_check_the_channels():
    reference, floating, truth = make_pair(25.0, (4.0, -2.0))
    stacked = [np.stack([im, im], axis=2) for im in (reference, floating)]
    method = make_method("cascade", {"networks": 2, "original_keypoints": {}}, seed=0)
    result = method.register(*stacked, originals=(reference, floating))
    assert result.ok, result.message
    assert "sift-original+ecc@1 " in result.message and "sift-original+ecc@2 " in result.message
    assert error(result.matrix, truth, floating) < 1.0
    with pytest.raises(ValueError, match="not 3 networks' equal groups"):
        make_method("cascade", {"networks": 3}, seed=0).register(*stacked)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="networks"):
            make_method("cascade", {"networks": bad}, seed=0)
