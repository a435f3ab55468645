"""File input/output shared by every stage.

Every writer goes through :func:`atomic_path`, so an interrupted job never
leaves a half-written file that a resumed run would mistake for a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(ValueError):
    """Bad user input (missing, unreadable or inconsistent files).

    The message always names the offending file so the user can fix it.
    """


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file keeps the suffix of ``path`` so that libraries choosing
    a format from the extension (OpenCV, tifffile, matplotlib) still work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; results are meant to be shared like any other file.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: str | os.PathLike[str], frame: Any) -> None:
    """Write a pandas DataFrame atomically, without its index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a TIFF or PNG as an array of shape (H, W) or (H, W, C).

    Channel-first TIFFs with up to 4 planes (C, H, W) are moved to channel-last.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file not found: {path}")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            image = tifffile.imread(path)
        else:
            import cv2

            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise ValueError("OpenCV could not decode it")
            if image.ndim == 3:
                # OpenCV decodes colour PNGs as BGR(A); the pipeline works in RGB(A).
                image = image[..., ::-1].copy()
    except Exception as error:  # any decoder failure means a corrupt file
        raise InputError(f"cannot read image {path}: {error}") from error
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] <= 4 < image.shape[2]:
        image = np.moveaxis(image, 0, -1)
    if image.ndim not in (2, 3):
        raise InputError(f"image {path} has shape {image.shape}; expected (H, W) or (H, W, C)")
    return image


def write_tiff(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """(H, W) or (H, W, C); three channels are stored as RGB, anything else as grey channels."""
    array = np.ascontiguousarray(array)
    photometric = "rgb" if array.ndim == 3 and array.shape[-1] == 3 else "minisblack"
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, photometric=photometric)


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an 8-bit grey or RGB image as PNG."""
    import cv2

    array = np.ascontiguousarray(array)
    if array.ndim == 3:
        array = np.ascontiguousarray(array[..., ::-1])  # RGB -> BGR for OpenCV
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), array):
            raise OSError(f"OpenCV failed to write {path}")


def channels_of(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else int(image.shape[2])


def to_float01(image: np.ndarray) -> np.ndarray:
    """Scale an integer image to float32 in [0, 1] by its dtype's range.

    Float images are assumed to be in [0, 1] already and are only cast.
    """
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32) / float(np.iinfo(image.dtype).max)
    return image.astype(np.float32)


def to_uint8(image: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Map a float image linearly to uint8; by default its 0.5-99.5 percentile range."""
    image = np.asarray(image, dtype=np.float32)
    if low is None or high is None:
        low, high = (float(v) for v in np.percentile(image, [0.5, 99.5]))
    scale = 255.0 / max(high - low, 1e-12)
    return np.clip((image - low) * scale, 0, 255).astype(np.uint8)
