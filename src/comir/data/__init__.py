"""Data sets: a user's folder of aligned pairs, and a built-in synthetic one.

- :mod:`comir.data.pairs`: discover, validate and split a folder
  ``root/<modality>/<id>.<ext>`` into the pipeline's pairs table
  (columns ``id, split, path_A, path_B``).
- :mod:`comir.data.synthetic`: a deterministic SHG-like / H&E-like
  two-modality data set that shares only part of its structure.
"""

from comir.data.pairs import (
    PAIRS_COLUMNS,
    SPLITS,
    Modality,
    discover_pairs,
    split_pairs,
    validate_pairs,
)
from comir.data.synthetic import SyntheticSpec, generate_pair, render_pair, write_dataset

__all__ = [
    "PAIRS_COLUMNS",
    "SPLITS",
    "Modality",
    "SyntheticSpec",
    "discover_pairs",
    "generate_pair",
    "render_pair",
    "split_pairs",
    "validate_pairs",
    "write_dataset",
]
