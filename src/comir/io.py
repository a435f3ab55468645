"""File input/output shared by every stage, and the checks of user input that name its mistakes.

Every writer goes through :func:`atomic_path`, so an interrupted job never
leaves a half-written file that a resumed run would mistake for a result.
A mapping of options that reaches a stage from a model file, the command line
or a method's ``params`` is checked by :func:`reject_unknown_keys`: an unknown
key is most often a typo that would otherwise leave a default in force.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

if TYPE_CHECKING:  # pandas is imported where a table is read, not by every user of this module
    import pandas as pd

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(ValueError):
    """Bad user input (missing, unreadable or inconsistent files).

    The message always names the offending file so the user can fix it.
    """


def reject_unknown_keys(
    given: Iterable[str],
    known: Sequence[str],
    what: str,
    *,
    context: str = "",
    listed: str = "known",
    error: type[ValueError] = ValueError,
) -> None:
    """Raise ``error`` when ``given`` has a key outside ``known``, naming each and listing ``known``.

    The message reads ``unknown <what> '<key>', ...<context>; <listed>: <known, in order>``.

    Parameters
    ----------
    given : Iterable[str]
        The keys given (a mapping iterates over its keys).
    known : Sequence[str]
        The accepted keys, in the order the message lists them.
    what : str
        What the keys are, e.g. ``"test set key(s)"`` or ``"parameter(s)"``.
    context : str, optional
        Text after the unknown keys, e.g. ``" for registration method 'mi'"``. Default empty.
    listed : str, optional
        The word before the accepted keys. Default ``"known"``.
    error : type[ValueError], optional
        The exception raised, :class:`ValueError` (default) or a subclass such as
        :class:`comir.io.InputError`.

    Raises
    ------
    ValueError
        Of type ``error``, if any key of ``given`` is not in ``known``.
    """
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise error(f"unknown {what} {', '.join(map(repr, unknown))}{context}; {listed}: {', '.join(known)}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file keeps the suffix of ``path`` so that libraries choosing
    a format from the extension (OpenCV, tifffile, matplotlib) still work.
    The parent folder is created if missing; on an exception the temporary file
    is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.

    Yields
    ------
    pathlib.Path
        The temporary file to write to (in the folder of ``path``).
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
    """Write ``text`` to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (its folder is created if missing).
    text : str
        The content.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` atomically as indented JSON with sorted keys (other values as their ``str``).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (its folder is created if missing).
    data : Any
        A JSON-serialisable value; values JSON cannot encode are written as their ``str``.
    """
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: str | os.PathLike[str], frame: Any) -> None:
    """Write a pandas DataFrame atomically, without its index.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (its folder is created if missing).
    frame : pandas.DataFrame
        The table.
    """
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def read_tables(paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """The CSV tables at ``paths`` concatenated, those without rows left out (an empty frame if all are).

    Parameters
    ----------
    paths : Iterable[str or os.PathLike]
        The CSV files, concatenated in this order.

    Returns
    -------
    pandas.DataFrame
        The rows of all tables, with a fresh index.
    """
    import pandas as pd

    frames = [frame for frame in (pd.read_csv(path) for path in paths) if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a TIFF or PNG as an array of shape (H, W) or (H, W, C).

    Channel-first TIFFs with up to 4 planes (C, H, W) are moved to channel-last.
    Colour PNGs are returned as RGB(A).

    Parameters
    ----------
    path : str or os.PathLike
        The image file; ``.tif``/``.tiff`` are read with tifffile, anything else with OpenCV.

    Returns
    -------
    numpy.ndarray
        The image, in its stored dtype, ``(H, W)`` or ``(H, W, C)``.

    Raises
    ------
    InputError
        If the file does not exist, cannot be decoded, or is not 2-D or 3-D.
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
    """(H, W) or (H, W, C); three channels are stored as RGB, anything else as grey channels.

    The TIFF is written atomically (:func:`atomic_path`).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (its folder is created if missing).
    array : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` image, stored in its dtype.
    """
    array = np.ascontiguousarray(array)
    photometric = "rgb" if array.ndim == 3 and array.shape[-1] == 3 else "minisblack"
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, photometric=photometric)


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an 8-bit grey or RGB image as PNG.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (its folder is created if missing).
    array : numpy.ndarray
        ``(H, W)`` grey or ``(H, W, 3)`` RGB image, uint8.

    Raises
    ------
    OSError
        If OpenCV fails to write the file.
    """
    import cv2

    array = np.ascontiguousarray(array)
    if array.ndim == 3:
        array = np.ascontiguousarray(array[..., ::-1])  # RGB -> BGR for OpenCV
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), array):
            raise OSError(f"OpenCV failed to write {path}")


def channels_of(image: np.ndarray) -> int:
    """The number of channels of an (H, W) or (H, W, C) image.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` image.

    Returns
    -------
    int
        1 for a 2-D image, else ``C``.
    """
    return 1 if image.ndim == 2 else int(image.shape[2])


def full_scale(dtype: np.dtype, max_value: float | None = None) -> float:
    """The stored value that means full intensity: ``max_value``, else the integer type's maximum, else 1.

    Parameters
    ----------
    dtype : numpy.dtype
        The image's dtype.
    max_value : float or None, optional
        The full-scale value when given. Default None.

    Returns
    -------
    float
        The full-scale value.
    """
    if max_value is not None:
        return float(max_value)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


def to_float01(image: np.ndarray, max_value: float | None = None) -> np.ndarray:
    """Scale an image to float32 so that full intensity is 1 (see :func:`full_scale`).

    Values are not clipped: :func:`intensity_warning` reports images that do not fit.

    Parameters
    ----------
    image : numpy.ndarray
        The image, any dtype.
    max_value : float or None, optional
        The stored value of full intensity; None: the integer type's maximum, or 1 for floats. Default None.

    Returns
    -------
    numpy.ndarray
        The image as float32, divided by the full-scale value.
    """
    scale = full_scale(image.dtype, max_value)
    data = image.astype(np.float32)
    return data if scale == 1.0 else data / np.float32(scale)


# An integer image whose largest value is below this share of its type's range (e.g. 12-bit data
# in a 16-bit file reaches 1/16) would come out dark and compressed when divided by the type's maximum.
_SMALL_RANGE = 1.0 / 16


def intensity_warning(image: np.ndarray, max_value: float | None = None) -> str | None:
    """Why ``image`` would not map to [0, 1] with this scaling, or ``None`` when it does.

    Flags values below 0 or above full scale, and integer images of 16 bits or more whose
    values use at most 1/16 of their type's range while no ``max_value`` is given.

    Parameters
    ----------
    image : numpy.ndarray
        The image, any dtype.
    max_value : float or None, optional
        The stored value of full intensity, as in :func:`to_float01`. Default None.

    Returns
    -------
    str or None
        The problem in words, or ``None``.
    """
    low, high = float(np.min(image)), float(np.max(image))
    scale = full_scale(image.dtype, max_value)
    if low < 0 or high > scale:
        given = f"max_value {max_value:g}" if max_value is not None else f"{image.dtype} full scale {scale:g}"
        return f"values span [{low:g}, {high:g}], outside [0, {given}] (they map outside [0, 1])"
    integer = np.issubdtype(image.dtype, np.integer)
    if max_value is None and integer and image.dtype.itemsize >= 2 and high <= scale * _SMALL_RANGE:
        return (
            f"values reach only {high:g} of the {image.dtype} range ({scale:g}), e.g. 12-bit data in 16-bit files; "
            f"divided by {scale:g} the image is dark"
        )
    return None


def to_uint8(image: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Map a float image linearly to uint8; by default its 0.5-99.5 percentile range.

    Parameters
    ----------
    image : numpy.ndarray
        The image (converted to float32).
    low, high : float or None, optional
        The values mapped to 0 and 255 (values outside are clipped); unless both are given, the
        image's 0.5th and 99.5th percentiles. Default None.

    Returns
    -------
    numpy.ndarray
        The uint8 image, the shape of ``image``.
    """
    image = np.asarray(image, dtype=np.float32)
    if low is None or high is None:
        low, high = (float(v) for v in np.percentile(image, [0.5, 99.5]))
    scale = 255.0 / max(high - low, 1e-12)
    return np.clip((image - low) * scale, 0, 255).astype(np.uint8)


def comir_preview(comir: np.ndarray) -> np.ndarray:
    """An 8-bit picture of a (C, H, W) CoMIR: grey for 1 channel, RGB of the first three otherwise.

    Each channel is scaled by :func:`to_uint8`; a 2-channel CoMIR gets a zero blue channel.

    Parameters
    ----------
    comir : numpy.ndarray
        ``(C, H, W)`` CoMIR.

    Returns
    -------
    numpy.ndarray
        uint8, ``(H, W)`` for one channel, else ``(H, W, 3)``.
    """
    if comir.shape[0] == 1:
        return to_uint8(comir[0])
    channels = [to_uint8(c) for c in comir[:3]]
    while len(channels) < 3:
        channels.append(np.zeros_like(channels[0]))
    return np.stack(channels, axis=-1)
