"""A built-in two-modality data set, deterministic from a seed.

Why this exists
---------------
The pipeline needs an example that runs anywhere, without downloading
anything, and that reproduces the *difficulty* of the paper's biomedical
task: second-harmonic generation (SHG) microscopy versus H&E bright-field
(BF).  Those two modalities share only part of their structure.  SHG shows
collagen fibres and nothing else; H&E shows the same collagen (as pink-red
eosin), but also nuclei, cytoplasm, stroma texture and empty lumina that SHG
does not see, while fibre brightness in SHG depends on fibre orientation and
density in a way that H&E does not reproduce.  Mutual information on the
originals therefore has to match a sparse bright pattern against a cluttered
colour image, and it does poorly; learned representations (CoMIRs) can keep
only the shared part (the fibres) and register well.  The generator below
builds exactly that situation, element by element.

The model
---------
Both images are rendered from one hidden scene, drawn at twice the output
resolution and downsampled with area averaging (anti-aliasing, sub-pixel
positions):

*Collagen fibres* (the shared structure).  A smooth random orientation field
(a low-frequency random field in the doubled-angle representation, so that
fibre directions are locally coherent as in real stroma, but with no global
periodicity) is followed by ``fibre_bundles`` random walks with momentum:
each walk's heading relaxes towards the local field direction and gets an
AR(1) wobble, which gives smooth, wavy, non-repeating curves.  Every walk is
the centre line of a *bundle* of 1-6 roughly parallel fibres, offset along
the normal by a few pixels with slowly varying offsets, each covering part of
the bundle's length and having its own width (1-3.5 px).  Walks start
uniformly over the image and slightly beyond it, so every 128 px patch holds
several fibres and no region is empty.

*Modality A, "SHG-like"* (single channel).  Only fibres, bright on black.
Each fibre has its own brightness (log-normal; ``faint_fraction`` of them very
faint) and the brightness also varies *along* the fibre (a smooth random
profile), as SHG intensity does with fibre orientation and packing.  Bright
fibres are drawn last so crossings look like a maximum.  Then a mild Gaussian
blur (the point-spread function), shot noise (Poisson photon counts) and
sparse dark-count speckles.

*Modality B, "H&E-like"* (RGB), rendered with a Beer-Lambert stain model
(optical density = eosin amount x eosin colour + haematoxylin amount x
haematoxylin colour; transmitted light = exp(-OD)), so colours mix like real
stains:

- eosin-pink stroma with a low-frequency tissue-density texture and a fine
  grain -- absent from A, it makes B's background non-constant;
- the *same* fibres as A, as extra eosin (darker, more saturated pink-red),
  of uniform strength whatever their brightness in A (H&E does not encode
  SHG intensity), slightly wider than in A; most of A's faint fibres are
  invisible in B, and a few fibre bundles (``b_only_fraction``) appear in B only
  (collagen that produces little SHG) -- the shared structure is partial;
- many purple-blue nuclei: clusters of round-to-oval nuclei (radius 3-8 px)
  placed preferentially where fibres are sparse (cell nests), with chromatin
  texture and a faint purple cytoplasm halo, plus scattered elongated
  fibroblast nuclei lying along the fibres -- absent from A (A is dark there
  unless a fibre crosses);
- a few white lumen-like holes with irregular outlines (no tissue: no fibres
  in either modality, no stroma in B) -- a strong edge in B with no
  counterpart edge in A;
- per-image stain-strength variation, a different blur from A, and additive
  Gaussian colour noise (a different noise model from A's shot noise).

Scales are chosen for the paper's protocol: 128 px training patches and
256 px test patches each contain many fibres and nuclei, and the fibre layout
is random (no periodicity), so the correct alignment is unambiguous.
Generation is vectorised (NumPy plus OpenCV drawing; Python loops only over
fibres, fibre chunks and nuclei); its time: docs/results/speed.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.signal import lfilter

from comir.io import InputError, write_tiff

__all__ = [
    "SyntheticPair",
    "SyntheticSpec",
    "generate_pair",
    "render_pair",
    "synthetic_ids",
    "write_dataset",
]

_SUPERSAMPLE = 2  # drawing resolution factor (anti-aliasing by area averaging)
_SHIFT = 3  # OpenCV fractional bits for sub-pixel drawing coordinates

# Haematoxylin and eosin optical-density colours (R, G, B), after Ruifrok &
# Johnston, with eosin made slightly redder to look like typical H&E scans.
_HAEMATOXYLIN = np.array([0.65, 0.70, 0.29], dtype=np.float32)
_EOSIN = np.array([0.11, 0.83, 0.55], dtype=np.float32)


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the synthetic SHG-like / H&E-like data set.

    Counts are given per 512 x 512 px and scale with the image area; lengths
    are in pixels and do not scale (they are physical sizes).
    """

    n_images: int = 24
    size: int = 512
    seed: int = 0
    # fibres (shared structure)
    fibre_bundles: float = 150.0  # bundle centre lines per 512^2 px
    fibres_per_bundle: float = 2.0  # mean (1 + Poisson); at most 6
    fibre_length: tuple[float, float] = (30.0, 200.0)  # bundle length range, px
    fibre_width: tuple[float, float] = (1.0, 3.5)  # fibre width range in A, px
    orientation_scale: float = 140.0  # correlation length of the orientation field, px
    faint_fraction: float = 0.3  # fibres that are faint in A ...
    faint_hidden_in_b: float = 0.75  # ... of which this share is invisible in B
    b_only_fraction: float = 0.08  # fibre bundles visible in B only
    # nuclei and holes (B only)
    nucleus_clusters: float = 18.0  # per 512^2 px
    nuclei_per_cluster: float = 20.0  # mean (Poisson)
    scattered_nuclei: float = 120.0  # fibroblast-like nuclei along fibres, per 512^2 px
    nucleus_radius: tuple[float, float] = (3.0, 8.0)  # px
    holes: float = 1.5  # mean number of lumen-like holes per 512^2 px (Poisson)
    hole_radius: tuple[float, float] = (12.0, 38.0)  # px
    # imaging
    a_blur_sigma: float = 0.8  # px, SHG point-spread function
    a_photons: float = 30.0  # photon count of a unit-brightness fibre (shot noise)
    a_dark_rate: float = 0.004  # dark-count speckles per pixel
    b_blur_sigma: float = 1.2  # px, bright-field optics
    b_noise_sigma: float = 4.0  # Gaussian colour noise, grey levels

    def __post_init__(self) -> None:
        if int(self.n_images) != self.n_images or self.n_images < 1:
            raise InputError(f"SyntheticSpec.n_images must be a positive integer, got {self.n_images!r}")
        if int(self.size) != self.size or self.size < 32:
            raise InputError(f"SyntheticSpec.size must be an integer >= 32 px, got {self.size!r}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise InputError(f"SyntheticSpec.seed must be a non-negative integer, got {self.seed!r}")
        for name in ("fibre_length", "fibre_width", "nucleus_radius", "hole_radius"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise InputError(f"SyntheticSpec.{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        for name in ("faint_fraction", "faint_hidden_in_b", "b_only_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"SyntheticSpec.{name} must be in [0, 1], got {value!r}")


@dataclass(frozen=True)
class SyntheticPair:
    """One rendered pair with the hidden scene's masks (for tests and figures)."""

    a: np.ndarray  # uint8 (H, W): SHG-like
    b: np.ndarray  # uint8 (H, W, 3): H&E-like RGB
    fibres_a: np.ndarray  # bool: fibres drawn in A
    fibres_b: np.ndarray  # bool: fibres drawn in B
    nuclei: np.ndarray  # bool: nuclei (B only)
    holes: np.ndarray  # bool: lumen-like holes (no tissue)

    def masks(self) -> dict[str, np.ndarray]:
        """The hidden scene's masks by name: fibres in A, fibres in B, nuclei and holes."""
        return {
            "fibres_a": self.fibres_a,
            "fibres_b": self.fibres_b,
            "nuclei": self.nuclei,
            "holes": self.holes,
        }


# ---------------------------------------------------------------- helpers


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Zero-mean, unit-variance random field with correlation length ~``scale`` px."""
    cells = max(2, math.ceil(2.0 * size / scale)) + 4
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    grid = cv2.GaussianBlur(grid, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)
    # Upsample a slightly larger grid and crop, so borders are not special.
    pad = 2.0 * size / (cells - 4)
    full = int(round(size + 2 * pad))
    field = cv2.resize(grid, (full, full), interpolation=cv2.INTER_CUBIC)
    offset = int(round(pad))
    field = field[offset : offset + size, offset : offset + size]
    field -= field.mean()
    return field / max(float(field.std()), 1e-6)


def _ar1(noise: np.ndarray, rho: float) -> np.ndarray:
    """Stationary unit-variance AR(1) sequences along axis 0, driven by ``noise``.

    y_0 = e_0, y_t = rho y_{t-1} + sqrt(1 - rho^2) e_t.
    """
    scaled = noise * math.sqrt(1.0 - rho * rho)
    scaled[0] = noise[0]
    return lfilter([1.0], [1.0, -rho], scaled, axis=0)


def _area_scale(spec: SyntheticSpec) -> float:
    return (spec.size / 512.0) ** 2


def _points(xy: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> OpenCV fixed-point coordinates on the supersampled canvas."""
    return np.round((xy * _SUPERSAMPLE + (_SUPERSAMPLE - 1) / 2.0) * (1 << _SHIFT)).astype(np.int32)


def _downsample(canvas: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)


def _walk_bundles(spec: SyntheticSpec, rng: np.random.Generator, orientation: np.ndarray) -> list[np.ndarray]:
    """Centre lines of the fibre bundles: random walks with momentum following ``orientation``."""
    size = spec.size
    n = max(1, int(round(spec.fibre_bundles * _area_scale(spec))))
    step = 2.0
    lengths = rng.uniform(*spec.fibre_length, size=n)
    n_steps = int(math.ceil(lengths.max() / step))
    margin = 0.15 * spec.fibre_length[1]
    pos = rng.uniform(-margin, size + margin, size=(n, 2))
    ix = np.clip(pos.astype(int), 0, size - 1)
    heading = orientation[ix[:, 1], ix[:, 0]] + np.pi * rng.integers(0, 2, size=n)
    follow = rng.uniform(0.08, 0.25, size=n)  # how strongly a walk follows the field
    wobble = _ar1(rng.standard_normal((n_steps, n)), 0.9) * rng.uniform(0.03, 0.09, size=n)
    path = np.empty((n_steps + 1, n, 2))
    path[0] = pos
    for t in range(n_steps):
        ix = np.clip(pos.astype(int), 0, size - 1)
        target = orientation[ix[:, 1], ix[:, 0]]
        diff = np.mod(target - heading + np.pi / 2, np.pi) - np.pi / 2  # axial field: nearest sense
        heading = heading + follow * diff + wobble[t]
        pos = pos + step * np.stack([np.cos(heading), np.sin(heading)], axis=1)
        path[t + 1] = pos
    counts = np.maximum(2, np.round(lengths / step).astype(int) + 1)
    return [path[: counts[i], i] for i in range(n)]


# ---------------------------------------------------------------- renderer


def render_pair(spec: SyntheticSpec, index: int) -> SyntheticPair:
    """Render pair ``index`` of ``spec`` with its scene masks (deterministic).

    Parameters
    ----------
    spec : SyntheticSpec
        The data set's parameters; ``spec.seed`` and ``index`` seed the pair's generator.
    index : int
        The pair's non-negative index.

    Returns
    -------
    SyntheticPair
        A uint8 ``(size, size)``, B uint8 ``(size, size, 3)`` and the scene's boolean masks.

    Raises
    ------
    comir.io.InputError
        If ``index`` is not a non-negative integer.
    """
    if int(index) != index or index < 0:
        raise InputError(f"synthetic image index must be a non-negative integer, got {index!r}")
    rng = np.random.default_rng([int(spec.seed), int(index)])
    size = spec.size
    big = size * _SUPERSAMPLE
    area = _area_scale(spec)

    # --- hidden scene: orientation field and fibre bundles
    u = _smooth_noise(rng, size, spec.orientation_scale)
    v = _smooth_noise(rng, size, spec.orientation_scale)
    orientation = 0.5 * np.arctan2(v, u)
    centre_lines = _walk_bundles(spec, rng, orientation)

    fibres = []  # (polyline (m, 2), width_a, width_b, brightness profile (m,), in_a, in_b)
    for line in centre_lines:
        m = len(line)
        tangent = np.gradient(line, axis=0)
        tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        k = min(6, 1 + int(rng.poisson(max(spec.fibres_per_bundle - 1.0, 0.0))))
        spacing = rng.uniform(3.0, 7.0)
        offsets = (np.arange(k) - (k - 1) / 2.0) * spacing + rng.normal(0.0, 0.8, size=k)
        drift = _ar1(rng.standard_normal((m, k)), 0.97) * 1.2
        profile = np.exp(0.45 * _ar1(rng.standard_normal((m, k)), 0.95))
        b_only = rng.random() < spec.b_only_fraction  # a whole bundle with little SHG
        for j in range(k):
            # each member covers part of the bundle
            span = int(rng.uniform(0.5, 1.0) * m)
            start = int(rng.integers(0, m - span + 1)) if span < m else 0
            span = max(span, 2)
            sl = slice(start, start + span)
            xy = line[sl] + normal[sl] * (offsets[j] + drift[sl, j])[:, None]
            width_a = rng.uniform(*spec.fibre_width)
            width_b = width_a + rng.uniform(1.0, 3.0)
            faint = rng.random() < spec.faint_fraction
            base = float(np.exp(rng.normal(0.0, 0.35)))
            if faint:
                base *= rng.uniform(0.12, 0.3)
            in_b = not (faint and rng.random() < spec.faint_hidden_in_b)
            fibres.append((xy, width_a, width_b, base * profile[sl, j], not b_only, in_b or b_only))

    # --- draw fibres: A intensity (brightest last ~ maximum at crossings), coverage masks
    a_signal = np.zeros((big, big), np.float32)
    cover_a = np.zeros((big, big), np.float32)
    cover_b = np.zeros((big, big), np.float32)
    order = sorted(range(len(fibres)), key=lambda i: float(fibres[i][3].mean()))
    chunk = 4
    for i in order:
        xy, width_a, width_b, brightness, in_a, in_b = fibres[i]
        pts = _points(xy)
        thick_a = max(2, int(round(width_a * _SUPERSAMPLE)))
        thick_b = max(2, int(round(width_b * _SUPERSAMPLE)))
        if in_a:
            cv2.polylines(cover_a, [pts], False, 1.0, thick_a, cv2.LINE_8, _SHIFT)
            starts = np.arange(0, len(pts) - 1, chunk)
            values = np.add.reduceat(brightness, starts) / np.diff(np.append(starts, len(pts)))
            for s, value in zip(starts.tolist(), values.tolist()):
                cv2.polylines(a_signal, [pts[s : s + chunk + 1]], False, value, thick_a, cv2.LINE_8, _SHIFT)
        if in_b:
            cv2.polylines(cover_b, [pts], False, 1.0, thick_b, cv2.LINE_8, _SHIFT)

    # --- holes (no tissue in either modality)
    hole_canvas = np.zeros((big, big), np.float32)
    n_holes = int(rng.poisson(spec.holes * area))
    angles = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    for _ in range(n_holes):
        centre = rng.uniform(0.1 * size, 0.9 * size, size=2)
        r0 = rng.uniform(*spec.hole_radius)
        harmonics = sum(
            rng.normal(0.0, 0.25 / h) * np.cos(h * angles + rng.uniform(0, 2 * np.pi)) for h in range(2, 6)
        )
        radius = r0 * (1.0 + harmonics) * rng.uniform(0.4, 1.0) ** np.cos(angles - rng.uniform(0, np.pi)) ** 2
        outline = centre + radius[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        cv2.fillPoly(hole_canvas, [_points(outline)], 1.0, cv2.LINE_8, _SHIFT)

    # --- nuclei (B only)
    nuc_canvas = np.zeros((big, big), np.float32)
    density = cv2.GaussianBlur(_downsample(cover_a, size // 8 or 1), (0, 0), 2.0)
    density = density / max(float(density.max()), 1e-6)
    n_clusters = int(rng.poisson(spec.nucleus_clusters * area))
    cand = rng.uniform(0, size, size=(max(40, 8 * n_clusters), 2))
    cix = np.clip((cand / 8).astype(int), 0, density.shape[0] - 1)
    weight = (1.0 - density[cix[:, 1], cix[:, 0]]) ** 3 + 0.02
    chosen = rng.choice(len(cand), size=min(n_clusters, len(cand)), replace=False, p=weight / weight.sum())
    nuclei = []  # (centre, axes, angle, amount)
    r_lo, r_hi = spec.nucleus_radius
    for c in cand[chosen]:
        spread = rng.uniform(10.0, 30.0)
        for _ in range(int(rng.poisson(spec.nuclei_per_cluster))):
            r = rng.uniform(r_lo, r_hi)
            nuclei.append(
                (
                    c + rng.normal(0, spread, 2),
                    (r, r * rng.uniform(0.6, 0.95)),
                    rng.uniform(0, 180),
                    rng.uniform(0.6, 1.5),
                )
            )
    # fibroblast-like nuclei: elongated, along fibres
    n_scatter = int(rng.poisson(spec.scattered_nuclei * area))
    on_fibres = [f for f in fibres if f[5]]
    for _ in range(n_scatter if on_fibres else 0):
        xy = on_fibres[int(rng.integers(len(on_fibres)))][0]
        t = int(rng.integers(len(xy)))
        d = xy[min(t + 1, len(xy) - 1)] - xy[max(t - 1, 0)]
        angle = math.degrees(math.atan2(d[1], d[0]))
        centre = xy[t] + rng.normal(0.0, 2.0, 2)
        length = rng.uniform(0.8 * r_hi, 1.2 * r_hi)
        nuclei.append((centre, (length, rng.uniform(1.6, 2.8)), angle, rng.uniform(0.9, 1.4)))
    hole_small = _downsample(hole_canvas, size)
    for centre, axes, angle, amount in nuclei:
        cx, cy = int(round(centre[0])), int(round(centre[1]))
        if 0 <= cx < size and 0 <= cy < size and hole_small[cy, cx] > 0:
            continue  # no cells in a lumen
        cv2.ellipse(
            nuc_canvas,
            tuple(int(p) for p in _points(np.asarray(centre))),
            tuple(int(round(a * _SUPERSAMPLE * (1 << _SHIFT))) for a in axes),
            float(angle), 0.0, 360.0, float(amount), -1, cv2.LINE_8, _SHIFT,
        )

    # --- to output resolution
    a_signal = _downsample(a_signal, size)
    cover_a = _downsample(cover_a, size)
    cover_b = _downsample(cover_b, size)
    nuc = _downsample(nuc_canvas, size)
    hole = cv2.GaussianBlur(hole_small, (0, 0), 0.7)
    tissue = 1.0 - hole
    a_signal *= tissue
    cover_a *= tissue
    cover_b *= tissue
    nuc *= tissue

    # --- modality A: SHG-like
    a = cv2.GaussianBlur(a_signal, (0, 0), spec.a_blur_sigma)
    a = rng.poisson(np.maximum(a, 0.0) * spec.a_photons).astype(np.float32) / spec.a_photons
    dark = rng.poisson(spec.a_dark_rate, size=a.shape).astype(np.float32)
    a += dark * rng.uniform(0.1, 0.5, size=a.shape).astype(np.float32)
    a_img = np.clip(a * 130.0, 0, 255).astype(np.uint8)

    # --- modality B: H&E-like, Beer-Lambert stain mixing
    stain_e = rng.uniform(0.85, 1.15)
    stain_h = rng.uniform(0.85, 1.15)
    grain = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 0.8)
    eosin = 0.55 * (1.0 + 0.25 * _smooth_noise(rng, size, 90.0) + 0.12 * _smooth_noise(rng, size, 14.0)) + 0.12 * grain
    eosin = np.maximum(eosin, 0.05) + 0.55 * cover_b
    nuc_mask = np.minimum(nuc, 1.0)
    chromatin = 1.0 + 0.3 * cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 1.0) / 0.28
    cytoplasm = cv2.GaussianBlur(nuc_mask, (0, 0), 6.0)
    haem = 1.3 * nuc * chromatin + 0.35 * cytoplasm
    eosin = eosin * (1.0 - 0.5 * nuc_mask) + 0.15 * cytoplasm
    eosin *= stain_e * tissue
    haem *= stain_h * tissue
    od = eosin[..., None] * _EOSIN + haem[..., None] * _HAEMATOXYLIN + 0.03
    light = np.exp(-od) * 255.0
    light = cv2.GaussianBlur(light, (0, 0), spec.b_blur_sigma)
    light += rng.normal(0.0, spec.b_noise_sigma, size=light.shape).astype(np.float32)
    light += rng.normal(0.0, 0.5 * spec.b_noise_sigma, size=(size, size, 1)).astype(np.float32)
    b_img = np.clip(np.round(light), 0, 255).astype(np.uint8)

    return SyntheticPair(
        a=a_img,
        b=b_img,
        fibres_a=cover_a > 0.5,
        fibres_b=cover_b > 0.5,
        nuclei=nuc_mask > 0.5,
        holes=hole > 0.5,
    )


def generate_pair(spec: SyntheticSpec, index: int, *, return_masks: bool = False):
    """Return ``(A, B)``: A uint8 (size, size) SHG-like, B uint8 (size, size, 3) H&E-like RGB.

    Deterministic: depends only on ``(spec, index)``.

    Parameters
    ----------
    spec : SyntheticSpec
        The data set's parameters.
    index : int
        The pair's non-negative index.
    return_masks : bool, optional
        Also return the hidden scene's masks. Default False.

    Returns
    -------
    tuple
        ``(A, B)``, or with ``return_masks`` ``(A, B, masks)`` where ``masks`` holds boolean arrays
        ``fibres_a``, ``fibres_b``, ``nuclei`` and ``holes``.

    Raises
    ------
    comir.io.InputError
        If ``index`` is not a non-negative integer.
    """
    pair = render_pair(spec, index)
    if return_masks:
        return pair.a, pair.b, pair.masks()
    return pair.a, pair.b


def synthetic_ids(spec: SyntheticSpec) -> list[str]:
    """IDs ``syn_000`` ... (at least three digits).

    Parameters
    ----------
    spec : SyntheticSpec
        The data set's parameters (``n_images``).

    Returns
    -------
    list[str]
        ``n_images`` ids, zero-padded to the same width.
    """
    digits = max(3, len(str(spec.n_images - 1)))
    return [f"syn_{i:0{digits}d}" for i in range(spec.n_images)]


def write_dataset(
    spec: SyntheticSpec, out_dir: Path, modality_names: tuple[str, str] = ("A", "B")
) -> list[str]:
    """Write ``out_dir/<nameA>/<id>.tif`` (SHG-like) and ``out_dir/<nameB>/<id>.tif`` (H&E-like).

    Files are written atomically.

    Parameters
    ----------
    spec : SyntheticSpec
        The data set's parameters.
    out_dir : pathlib.Path
        Root of the data set.
    modality_names : tuple[str, str], optional
        Folder names of the SHG-like and the H&E-like modality. Default ``("A", "B")``.

    Returns
    -------
    list[str]
        The IDs in order (:func:`synthetic_ids`).

    Raises
    ------
    comir.io.InputError
        If ``modality_names`` are not two different plain folder names.
    """
    names = tuple(modality_names)
    if len(names) != 2 or any(
        not isinstance(n, str) or not n or n in (".", "..") or "/" in n or "\\" in n for n in names
    ):
        raise InputError(f"modality_names must be two plain folder names, got {modality_names!r}")
    if names[0] == names[1]:
        raise InputError(f"modality_names must differ, got {modality_names!r}")
    out_dir = Path(out_dir)
    ids = synthetic_ids(spec)
    for index, pair_id in enumerate(ids):
        a, b = generate_pair(spec, index)
        write_tiff(out_dir / names[0] / f"{pair_id}.tif", a)
        write_tiff(out_dir / names[1] / f"{pair_id}.tif", b)
    return ids
