"""CurveAlign-style baseline for bright-field (H&E, RGB) / SHG registration.

The data-specific baseline of the CoMIR paper (Keikhosravi et al., "Intensity-based
registration of bright-field and second-harmonic generation images of histopathology
tissue sections", Biomed. Opt. Express 11(1), 2020; docs/method.md, section 7): SHG
shows only collagen, which H&E stains pink with eosin, so the colour image is first
turned into a *collagen map* and that map is registered to the SHG image with rigid
Mattes mutual information.  Written from the paper's description; the MI registration
is :class:`comir.register.mi.MutualInformationRegistration`, used as is.

Collagen segmentation (``segmentation``)
-----------------------------------------
Stain strength and scanner white balance vary from image to image, so the colour
image is first normalised per channel: ``hsv_otsu`` divides each channel by its
``100 - stretch_percentile`` percentile (a white balance; dark stains keep
their hue), ``kmeans_ab`` also maps each channel's ``stretch_percentile``
percentile to 0 (a contrast stretch, which spreads the a*b* clusters of faint,
dark scans apart).  CurveAlign, too, adjusts each channel before segmenting.
Each option's normalisation was chosen on real cores:
docs/results/method-settings.md.

* ``hsv_otsu``: HSV (``skimage.color.rgb2hsv``).  The hue circle is cut at
  green-cyan (hue 0.4, a colour H&E does not produce), so that the H&E colours
  run in one direction: blue, purple (haematoxylin), pink, red (eosin).  Otsu's
  threshold on the hue of the stained pixels (saturation above
  ``MIN_SATURATION``) separates haematoxylin from eosin; a second Otsu threshold on
  the saturation of the eosin pixels keeps the strongly stained eosin, the
  collagen (``saturation_otsu``; without it every eosin pixel counts).
  Nuclei are the stained pixels on the haematoxylin side of the hue threshold
  that are also darker than Otsu's threshold on the value channel.
* ``kmeans_ab``: k-means (``kmeans_clusters``, default 3; k-means++ seeding
  from the method's seed, a few restarts, Lloyd iterations, all NumPy) on the
  a*b* chroma of CIELAB (``skimage.color.rgb2lab``).  Among the clusters with
  enough chroma (at least ``MIN_CHROMA_FRACTION`` of the most colourful centre;
  this leaves out white background and grey), the collagen cluster is the one
  closest to eosin pink: the centre reaching farthest along the eosin hue
  direction (``EOSIN_HUE_DEG`` = 0 deg: a* > 0, b* = 0), i.e. the largest
  chroma x cos(hue difference), which prefers strongly stained eosin (collagen)
  to pale eosin (cytoplasm) and to the bluer haematoxylin.  The nuclei cluster is
  the darkest one (lowest mean L* of its pixels; haematoxylin-stained nuclei are
  the darkest structures of H&E), unless that is the collagen cluster.

In both, the nuclei mask is dilated by ``nuclei_dilation_px`` and removed from
the collagen mask (colours blend at the rim of a nucleus), then connected
collagen pieces smaller than ``min_object_px`` pixels are dropped.  The collagen
map is the mask as float (1 collagen, 0 elsewhere), Gaussian-smoothed by
``smooth_sigma`` px (0: the binary mask).

Inputs and errors
-----------------
The method needs the *original* colour image: :func:`comir.register.cases.load_patch`
gives it ``(H, W, 3)`` (intensity pre-processing, no PCA) because of
``colour_input = True``, and ``(H, W)`` for the single-channel modality.  Exactly
one of reference/floating must be ``(H, W, 3)`` and the other ``(H, W)`` (or
``(H, W, 1)``); the colour image is found by its channel count, so both
directions work, and the result is floating -> reference as always.  Any other
pair (CoMIRs, two grey images, two colour images) raises :class:`ValueError`:
it is a configuration mistake (``curvealign`` on ``comir`` inputs, or on a data
set without exactly one RGB modality) and must stop the job loudly.  A
well-formed pair that cannot be registered (no collagen found, a constant
image, fewer colour pixels than k-means clusters, MI failing) is a ``failed``
result with a message (:class:`~comir.register.base.RegistrationFailure`);
any other exception is a bug and propagates.

Result: ``metric`` is the MI method's final Mattes metric (lower is better);
``message`` starts with the segmentation summary (collagen share of the colour
image), followed by the MI message.

The segmentations against MI on the originals, ``smooth_sigma`` and
``saturation_otsu``: docs/results/method-settings.md; their cost:
docs/results/speed.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from comir.register.base import OK, RegistrationFailure, RegistrationResult, check_image, fill_invalid, timed
from comir.register.mi import MutualInformationRegistration

SEGMENTATIONS = ("hsv_otsu", "kmeans_ab")
HUE_CUT = 0.4  # HSV hue where the circle is cut (green-cyan: not an H&E colour)
MIN_SATURATION = 0.05  # below this the HSV hue is noise (white, grey)
EOSIN_HUE_DEG = 0.0  # a*b* hue angle of eosin pink-red (a* > 0, b* = 0)
MIN_CHROMA_FRACTION = 0.25  # k-means centres less colourful than this share of the most colourful are not stains
KMEANS_SAMPLES = 20_000  # pixels the k-means is fitted on (all pixels are then assigned)
KMEANS_RESTARTS = 3
KMEANS_ITERATIONS = 100

# The MI parameters passed through unchanged (all of MutualInformationRegistration's
# but ``shared_basis``, meaningless for two single-channel images, ``transform``: the
# CurveAlign baseline is rigid, and ``seed``).
MI_PARAMS = (
    "bins",
    "sampling_fraction",
    "optimizer",
    "iterations",
    "learning_rate",
    "min_step",
    "shrink_factors",
    "smoothing_sigmas",
    "start_angles_deg",
    "finest_level_starts",
    "evolutionary_radius",
    "evolutionary_growth",
    "evolutionary_epsilon",
    "threads",
)

_MI = MutualInformationRegistration  # defaults of the pass-through parameters come from here


@dataclass(frozen=True)
class Segmentation:
    """Boolean collagen and nuclei masks of a colour image, and a one-line summary."""

    collagen: np.ndarray
    nuclei: np.ndarray
    note: str


# ------------------------------------------------------------------ colour helpers


def stretch_channels(rgb: np.ndarray, percentile: float, low: bool = True) -> np.ndarray:
    """Per-channel linear map of each channel's ``100 - percentile`` percentile to 1.

    With ``low`` its ``percentile`` percentile goes to 0 (a contrast stretch);
    without, 0 stays 0 (a white balance: only the bright end is normalised).
    ``percentile`` 0: the image is only clipped to [0, 1].

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, C)`` image.
    percentile : float
        The percentile of each tail, in percent.
    low : bool, optional
        Map the ``percentile`` percentile to 0 as well. Default True.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, C)`` in [0, 1].
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    if percentile <= 0:
        return np.clip(rgb, 0.0, 1.0)
    flat = rgb.reshape(-1, rgb.shape[-1])
    high = np.percentile(flat, 100.0 - percentile, axis=0)
    bottom = np.percentile(flat, percentile, axis=0) if low else np.zeros_like(high)
    scale = 1.0 / np.maximum(high - bottom, 1e-6)
    return np.clip((rgb - bottom) * scale, 0.0, 1.0).astype(np.float32)


def _squared_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N, k) squared Euclidean distances, as |p|^2 - 2 p.c + |c|^2 (one matrix product)."""
    squared = np.sum(points**2, axis=1)[:, None] - 2.0 * points @ centres.T + np.sum(centres**2, axis=1)[None, :]
    return np.maximum(squared, 0.0)


def kmeans(
    points: np.ndarray,
    k: int,
    rng: np.random.Generator,
    restarts: int = KMEANS_RESTARTS,
    iterations: int = KMEANS_ITERATIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means of ``points`` (N, D): ``(centres (k, D), labels (N,))``.

    k-means++ seeding from ``rng``, Lloyd iterations until the labels stop
    changing; the restart with the lowest within-cluster sum of squares wins.
    An emptied cluster is re-seeded at the point farthest from its centre.
    Vectorised over points and centres (one (N, k) distance matrix per step).

    Parameters
    ----------
    points : numpy.ndarray
        ``(N, D)`` points.
    k : int
        The number of clusters.
    rng : numpy.random.Generator
        The random stream of the seeding.
    restarts : int, optional
        Runs from different seedings (at least 1). Default :data:`KMEANS_RESTARTS` (3).
    iterations : int, optional
        Most Lloyd iterations per run. Default :data:`KMEANS_ITERATIONS` (100).

    Returns
    -------
    centres : numpy.ndarray
        ``(k, D)`` float64 cluster centres.
    labels : numpy.ndarray
        ``(N,)`` the cluster of each point.

    Raises
    ------
    ValueError
        If there are fewer than ``k`` points.
    """
    points = np.asarray(points, dtype=np.float64)
    count = len(points)
    if count < k:
        raise ValueError(f"k-means needs at least k = {k} points, got {count}")
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(max(1, int(restarts))):
        centres = np.empty((k, points.shape[1]))
        centres[0] = points[rng.integers(count)]
        nearest = np.sum((points - centres[0]) ** 2, axis=1)
        for j in range(1, k):
            total = nearest.sum()
            index = rng.choice(count, p=nearest / total) if total > 0 else rng.integers(count)
            centres[j] = points[index]
            nearest = np.minimum(nearest, np.sum((points - centres[j]) ** 2, axis=1))
        labels = np.full(count, -1)
        for _ in range(int(iterations)):
            distances = _squared_distances(points, centres)
            new_labels = np.argmin(distances, axis=1)
            if np.array_equal(new_labels, labels):
                break
            labels = new_labels
            sums = np.stack(
                [np.bincount(labels, weights=points[:, d], minlength=k) for d in range(points.shape[1])], axis=1
            )
            sizes = np.bincount(labels, minlength=k)
            for j in np.flatnonzero(sizes == 0):  # re-seed an empty cluster
                far = int(np.argmax(distances[np.arange(count), labels]))
                sums[j], sizes[j] = points[far], 1
                labels[far] = j
            centres = sums / sizes[:, None]
        inertia = float(np.sum((points - centres[labels]) ** 2))
        if best is None or inertia < best[0]:
            best = (inertia, centres, labels)
    assert best is not None
    return best[1], best[2]


def _along(ab: np.ndarray, hue_deg: float) -> np.ndarray:
    """Component of a*b* points (N, 2) along the hue direction ``hue_deg`` (chroma x cos of the hue difference)."""
    angle = math.radians(hue_deg)
    return np.asarray(ab, dtype=float) @ np.array([math.cos(angle), math.sin(angle)])


# ------------------------------------------------------------------ segmentation


def segment_hsv_otsu(rgb: np.ndarray, saturation_otsu: bool = True) -> Segmentation:
    """Collagen and nuclei masks of a stretched RGB image in [0, 1] by HSV + Otsu (module doc).

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, 3)`` image in [0, 1] (:func:`stretch_channels`).
    saturation_otsu : bool, optional
        Keep only the eosin pixels above Otsu's saturation threshold. Default True.

    Returns
    -------
    Segmentation
        The masks (both empty when fewer than two pixels are stained or their hue is constant).
    """
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu

    hsv = rgb2hsv(rgb)
    hue = (hsv[..., 0] - HUE_CUT) % 1.0  # blue < purple < pink < red: H&E hues in order
    saturation, value = hsv[..., 1], hsv[..., 2]
    stained = saturation > MIN_SATURATION
    if np.count_nonzero(stained) < 2 or np.ptp(hue[stained]) == 0:
        empty = np.zeros(rgb.shape[:2], bool)
        return Segmentation(empty, empty, "hsv_otsu: no stained pixels")
    hue_threshold = float(threshold_otsu(hue[stained]))
    eosin = stained & (hue > hue_threshold)
    collagen = eosin
    saturation_threshold = math.nan
    if saturation_otsu and np.count_nonzero(eosin) > 1 and np.ptp(saturation[eosin]) > 0:
        saturation_threshold = float(threshold_otsu(saturation[eosin]))
        collagen = eosin & (saturation > saturation_threshold)
    value_threshold = float(threshold_otsu(value)) if np.ptp(value) > 0 else math.inf
    nuclei = stained & (hue <= hue_threshold) & (value < value_threshold)
    note = (
        f"hsv_otsu: hue threshold {(hue_threshold + HUE_CUT) % 1.0:.3f}"
        + (f", saturation threshold {saturation_threshold:.3f}" if math.isfinite(saturation_threshold) else "")
    )
    return Segmentation(collagen, nuclei, note)


def segment_kmeans_ab(rgb: np.ndarray, clusters: int, rng: np.random.Generator) -> Segmentation:
    """Collagen and nuclei masks of a stretched RGB image in [0, 1] by k-means on a*b* (module doc).

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, 3)`` image in [0, 1] (:func:`stretch_channels`).
    clusters : int
        The number of k-means clusters.
    rng : numpy.random.Generator
        The random stream of the pixel sample (at most :data:`KMEANS_SAMPLES`) and the seeding.

    Returns
    -------
    Segmentation
        The masks (both empty when no cluster has colour).

    Raises
    ------
    ValueError
        If the image has fewer pixels than ``clusters`` (:func:`kmeans`).
    """
    from skimage.color import rgb2lab

    lab = rgb2lab(rgb).reshape(-1, 3)
    ab = lab[:, 1:]
    sample = ab if len(ab) <= KMEANS_SAMPLES else ab[rng.choice(len(ab), KMEANS_SAMPLES, replace=False)]
    centres, _ = kmeans(sample, int(clusters), rng)
    labels = np.argmin(_squared_distances(ab, centres), axis=1)
    chroma = np.hypot(centres[:, 0], centres[:, 1])
    if chroma.max() <= 0:
        empty = np.zeros(rgb.shape[:2], bool)
        return Segmentation(empty, empty, "kmeans_ab: no colour")
    stain = chroma >= MIN_CHROMA_FRACTION * chroma.max()
    collagen_label = int(np.argmax(np.where(stain, _along(centres, EOSIN_HUE_DEG), -np.inf)))
    # Nuclei: the darkest cluster (mean L* of its pixels), if it is not the collagen one.
    sizes = np.bincount(labels, minlength=len(centres))
    lightness = np.bincount(labels, weights=lab[:, 0], minlength=len(centres)) / np.maximum(sizes, 1)
    lightness[sizes == 0] = np.inf
    nuclei_label = int(np.argmin(lightness))
    labels = labels.reshape(rgb.shape[:2])
    nuclei = labels == nuclei_label if nuclei_label != collagen_label else np.zeros(labels.shape, bool)
    a, b = centres[collagen_label]
    return Segmentation(labels == collagen_label, nuclei, f"kmeans_ab: collagen cluster a*b* ({a:.1f}, {b:.1f})")


def segment_collagen(
    rgb: np.ndarray,
    segmentation: str = "hsv_otsu",
    kmeans_clusters: int = 3,
    stretch_percentile: float = 1.0,
    saturation_otsu: bool = True,
    nuclei_dilation_px: int = 1,
    min_object_px: int = 0,
    seed: int = 0,
) -> Segmentation:
    """Collagen mask (nuclei removed) and nuclei mask of an RGB H&E image ``(H, W, 3)`` in [0, 1].

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, 3)`` image in [0, 1].
    segmentation : str, optional
        ``"hsv_otsu"`` or ``"kmeans_ab"`` (module doc). Default ``"hsv_otsu"``.
    kmeans_clusters : int, optional
        k of ``"kmeans_ab"``. Default 3.
    stretch_percentile : float, optional
        Per-channel normalisation before segmenting (:func:`stretch_channels`): white balance for
        ``"hsv_otsu"``, contrast stretch for ``"kmeans_ab"``; 0 = off. Default 1.
    saturation_otsu : bool, optional
        ``"hsv_otsu"``: keep only the eosin pixels above Otsu's saturation threshold. Default True.
    nuclei_dilation_px : int, optional
        Dilation (px) of the nuclei mask before it is removed from the collagen. Default 1.
    min_object_px : int, optional
        Connected collagen pieces smaller than this are dropped (0 or 1: none). Default 0.
    seed : int, optional
        The k-means seed. Default 0.

    Returns
    -------
    Segmentation
        The collagen mask and the nuclei mask as segmented (undilated).

    Raises
    ------
    ValueError
        For an unknown ``segmentation``, or fewer pixels than ``kmeans_clusters``.
    """
    from scipy import ndimage

    if segmentation == "hsv_otsu":
        found = segment_hsv_otsu(stretch_channels(rgb, stretch_percentile, low=False), saturation_otsu)
    elif segmentation == "kmeans_ab":
        rgb = stretch_channels(rgb, stretch_percentile, low=True)
        found = segment_kmeans_ab(rgb, kmeans_clusters, np.random.default_rng(seed))
    else:
        raise ValueError(f"segmentation must be one of {SEGMENTATIONS}, got {segmentation!r}")
    nuclei = found.nuclei
    if nuclei_dilation_px > 0 and nuclei.any():
        nuclei = ndimage.binary_dilation(nuclei, ndimage.generate_binary_structure(2, 1), int(nuclei_dilation_px))
    collagen = found.collagen & ~nuclei
    if min_object_px > 1 and collagen.any():
        labels, count = ndimage.label(collagen)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        keep = sizes >= int(min_object_px)
        keep[0] = False
        collagen = keep[labels]
    return Segmentation(collagen, found.nuclei, found.note)


def collagen_map(collagen: np.ndarray, smooth_sigma: float) -> np.ndarray:
    """The collagen mask as float32, Gaussian-smoothed by ``smooth_sigma`` px (0: unsmoothed).

    Parameters
    ----------
    collagen : numpy.ndarray
        Boolean ``(H, W)`` mask.
    smooth_sigma : float
        Gaussian sigma in pixels (``nearest`` borders).

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W)`` in [0, 1].
    """
    from scipy import ndimage

    image = np.asarray(collagen, dtype=np.float32)
    if smooth_sigma > 0:
        image = ndimage.gaussian_filter(image, float(smooth_sigma), mode="nearest")
    return image


def split_colour_pair(reference: np.ndarray, floating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a colour/grey pair: exactly one ``(H, W, 3)`` image and one ``(H, W)`` (or ``(H, W, 1)``).

    Parameters
    ----------
    reference, floating : numpy.ndarray
        The two images, in either order.

    Returns
    -------
    tuple of numpy.ndarray
        ``(reference, floating)`` as float32, the grey one as ``(H, W)``.

    Raises
    ------
    ValueError
        For any other combination (a configuration mistake, see the module doc) or a malformed
        image (:func:`comir.register.base.check_image`).
    """
    images = [check_image(reference, "reference"), check_image(floating, "floating")]
    images = [im[..., 0] if im.ndim == 3 and im.shape[2] == 1 else im for im in images]
    colour = [im.ndim == 3 and im.shape[2] == 3 for im in images]
    grey = [im.ndim == 2 for im in images]
    if not ((colour[0] and grey[1]) or (grey[0] and colour[1])):
        raise ValueError(
            "curvealign registers an RGB bright-field image (H, W, 3) with a single-channel image "
            f"(H, W); got reference {np.shape(reference)} and floating {np.shape(floating)}. "
            "Use it only with inputs: [original] on a data set with exactly one 3-channel modality "
            "(it cannot register CoMIRs or two grey images)"
        )
    return images[0], images[1]


# ------------------------------------------------------------------ the method


@dataclass
class CurveAlignRegistration:
    """Collagen map of the H&E colour image, then rigid Mattes MI against the SHG image.

    ``segmentation``: "hsv_otsu" or "kmeans_ab"; ``kmeans_clusters`` (k of
    "kmeans_ab"); ``stretch_percentile`` (per-channel normalisation before
    segmenting: white balance for "hsv_otsu", contrast stretch for
    "kmeans_ab"; 0 = off); ``saturation_otsu`` ("hsv_otsu": keep only the eosin
    pixels above Otsu's saturation threshold); ``nuclei_dilation_px`` (nuclei
    mask dilation before removal); ``min_object_px`` (drop smaller collagen
    pieces); ``smooth_sigma`` (Gaussian of the collagen map, px).  The other
    parameters are :class:`~comir.register.mi.MutualInformationRegistration`'s
    with the same defaults (``MI_PARAMS``), passed through; ``seed`` seeds the
    k-means and the MI sampling.  See the module docstring.
    """

    name: ClassVar[str] = "curvealign"
    colour_input: ClassVar[bool] = True  # load_patch: the RGB original, not its PCA

    segmentation: str = "hsv_otsu"
    kmeans_clusters: int = 3
    stretch_percentile: float = 1.0
    saturation_otsu: bool = True
    nuclei_dilation_px: int = 1
    min_object_px: int = 0
    smooth_sigma: float = 2.0
    # MutualInformationRegistration's parameters and defaults
    bins: int = _MI.bins
    sampling_fraction: float = _MI.sampling_fraction
    optimizer: str = _MI.optimizer
    iterations: int = _MI.iterations
    learning_rate: float = _MI.learning_rate
    min_step: float = _MI.min_step
    shrink_factors: tuple[int, ...] = _MI.shrink_factors
    smoothing_sigmas: tuple[float, ...] = _MI.smoothing_sigmas
    start_angles_deg: tuple[float, ...] = _MI.start_angles_deg
    finest_level_starts: int | None = _MI.finest_level_starts
    evolutionary_radius: float = _MI.evolutionary_radius
    evolutionary_growth: float = _MI.evolutionary_growth
    evolutionary_epsilon: float = _MI.evolutionary_epsilon
    threads: int = _MI.threads
    seed: int = 0

    def __post_init__(self) -> None:
        if self.segmentation not in SEGMENTATIONS:
            raise ValueError(f"segmentation must be one of {SEGMENTATIONS}, got {self.segmentation!r}")
        if not 2 <= int(self.kmeans_clusters) <= 16:
            raise ValueError(f"kmeans_clusters must be in [2, 16], got {self.kmeans_clusters}")
        if not 0 <= float(self.stretch_percentile) < 50:
            raise ValueError(f"stretch_percentile must be in [0, 50), got {self.stretch_percentile}")
        if int(self.nuclei_dilation_px) < 0 or int(self.min_object_px) < 0:
            raise ValueError("nuclei_dilation_px and min_object_px must be >= 0")
        if float(self.smooth_sigma) < 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {self.smooth_sigma}")
        # The MI method validates its own parameters (and normalises the tuples).
        self._mi = MutualInformationRegistration(
            **{name: getattr(self, name) for name in MI_PARAMS}, seed=int(self.seed)
        )
        for name in MI_PARAMS:
            setattr(self, name, getattr(self._mi, name))

    def segment(self, rgb: np.ndarray) -> Segmentation:
        """The collagen segmentation of an RGB image (H, W, 3) in [0, 1] with this method's settings.

        Parameters
        ----------
        rgb : numpy.ndarray
            ``(H, W, 3)`` image in [0, 1].

        Returns
        -------
        Segmentation
            As :func:`segment_collagen`.
        """
        return segment_collagen(
            rgb,
            self.segmentation,
            int(self.kmeans_clusters),
            float(self.stretch_percentile),
            bool(self.saturation_otsu),
            int(self.nuclei_dilation_px),
            int(self.min_object_px),
            int(self.seed),
        )

    @timed(check=split_colour_pair)
    def register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Register the collagen map of the colour image to the grey (SHG) image with rigid MI.

        Parameters
        ----------
        reference, floating : numpy.ndarray
            One ``(H, W, 3)`` colour image and one ``(H, W)`` (or ``(H, W, 1)``) grey image, in either
            order (:func:`split_colour_pair`).
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks: the colour image is segmented with its invalid pixels
            set to the valid mean (they cannot be collagen) and the MI registration takes both masks as
            its metric masks. Default None.

        Returns
        -------
        RegistrationResult
            The rigid floating -> reference transform; ``metric`` MI's final Mattes metric. Failed for a
            constant colour image, no collagen found, too few pixels for k-means, or MI failing.

        Raises
        ------
        ValueError
            If the pair is not one colour and one grey image.
        """
        colour_is_reference = reference.ndim == 3
        colour_mask = reference_mask if colour_is_reference else floating_mask
        rgb = fill_invalid(reference if colour_is_reference else floating, colour_mask)
        if np.ptp(rgb) == 0:
            return RegistrationResult.failed("the colour image is constant: no collagen to segment")
        pixels = rgb.shape[0] * rgb.shape[1]
        if self.segmentation == "kmeans_ab" and pixels < int(self.kmeans_clusters):
            # kmeans() rejects this as a bad argument; for a well-formed but tiny image it is a failure.
            raise RegistrationFailure(
                f"the colour image has {pixels} pixels, fewer than kmeans_clusters = {self.kmeans_clusters}"
            )
        found = self.segment(rgb)
        if colour_mask is not None:
            found = dataclasses.replace(found, collagen=found.collagen & colour_mask)
        share = float(np.count_nonzero(found.collagen)) / found.collagen.size
        note = f"{found.note}; collagen {share:.1%} of the colour image"
        if share == 0:
            return RegistrationResult.failed(f"{note}: nothing to register")
        mapped = collagen_map(found.collagen, float(self.smooth_sigma))
        pair = (mapped, floating) if colour_is_reference else (reference, mapped)
        result = self._mi.register(*pair, reference_mask=reference_mask, floating_mask=floating_mask)
        if not result.ok:
            return dataclasses.replace(result, message=f"{note}; MI failed: {result.message}")
        return RegistrationResult(result.matrix, OK, result.metric, 0.0, f"{note}; {result.message}")


__all__ = [
    "CurveAlignRegistration",
    "MI_PARAMS",
    "SEGMENTATIONS",
    "Segmentation",
    "collagen_map",
    "kmeans",
    "segment_collagen",
    "segment_hsv_otsu",
    "segment_kmeans_ab",
    "split_colour_pair",
    "stretch_channels",
]
