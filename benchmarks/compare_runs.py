r"""Compare two results/ trees of one configuration: show that a code change left the outputs unchanged.

A refactor should not change what the pipeline computes. Run one configuration (e.g. the tiny
``.test/config.yaml``) once from a clone of the old commit and once from the new tree, then::

    .venv/bin/python benchmarks/compare_runs.py BEFORE/results AFTER/results \
        [--source-before OLD_CHECKOUT --source-after NEW_CHECKOUT] [--ignore-columns REGEX]

Every file of the two trees is paired by its path relative to the results folder and gets one
outcome, the first of these that holds:

``identical``
    the bytes are equal;
``identical_paths_replaced``
    a text file (csv, tsv, md, json, tfm, txt, yaml) equal once each tree's run folder (the parent
    of its results folder) and, where given, its source checkout are replaced by placeholders;
``identical_without_volatile``
    equal once volatile fields are left out, and some of them differed: CSV/TSV and Markdown-table
    columns and JSON keys whose names match ``--ignore-columns`` (timing, memory, provenance),
    in a model file (``.pt``) everything under a ``provenance`` key;
``same_content``
    equal content in other bytes: a model file's tensors (dtype, shape, values) and other fields,
    an image's dtype, shape and pixels (``.tif``/``.tiff`` by tifffile, ``.png`` by OpenCV with
    ``IMREAD_UNCHANGED``; other metadata may differ), or a table equal cell by cell;
``differ``
    none of the above, with the first difference found;
``skipped``
    not compared: ``.log`` files, Snakemake's ``.snakemake_timestamp`` files and everything under
    a ``benchmarks/`` folder (Snakemake's per-job timing files). A skipped file that exists in one
    tree only is counted as skipped, not as missing.

The summary lists the files only in one tree, the counts per extension and outcome, the volatile
columns and keys that differed (and were left out) and the differing files. The exit status is 0
when no file differs and none is only in one tree, else 1. PyTorch, tifffile and OpenCV are
imported only when a file of their kind has to be compared.
"""

import argparse
import csv
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

IDENTICAL = "identical"
PATHS_REPLACED = "identical_paths_replaced"
WITHOUT_VOLATILE = "identical_without_volatile"
SAME_CONTENT = "same_content"
DIFFER = "differ"
SKIPPED = "skipped"
OUTCOMES = (IDENTICAL, PATHS_REPLACED, WITHOUT_VOLATILE, SAME_CONTENT, DIFFER, SKIPPED)

TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".md", ".json", ".tfm", ".txt", ".yaml"})
IMAGE_SUFFIXES = frozenset({".tif", ".tiff", ".png"})
MODEL_SUFFIX = ".pt"
SKIPPED_SUFFIXES = frozenset({".log"})
SKIPPED_NAMES = frozenset({".snakemake_timestamp"})
SKIPPED_FOLDERS = frozenset({"benchmarks"})
MODEL_VOLATILE_KEY = "provenance"

#: Column and key names that measure time or memory or record provenance: they differ run to run.
#: A name matches when one of these words is the whole name or one of its ``_``-separated parts.
DEFAULT_VOLATILE = (
    r"(^|_)(seconds|s|time|wall|elapsed|peak_memory_mb|max_rss|max_vms|max_uss|max_pss|io_in|io_out|mean_load|"
    r"cpu_time|h:m:s|commit|revision|git|created|date|timestamp|provenance|python|host)($|_)"
)

RUN_PLACEHOLDER = "<run>"
SOURCE_PLACEHOLDER = "<source>"


class Verdict(NamedTuple):
    """The outcome of comparing one file of the two trees.

    Attributes
    ----------
    outcome : str
        One of :data:`OUTCOMES`.
    left_out : frozenset of str
        Volatile columns or keys that differed and were left out (only with ``WITHOUT_VOLATILE``).
    detail : str
        The first difference (with ``DIFFER``) or a note on what was compared; may be empty.
    """

    outcome: str
    left_out: frozenset[str] = frozenset()
    detail: str = ""


class Table(NamedTuple):
    """A table as text cells.

    Attributes
    ----------
    header : list of str
        The first row.
    rows : list of list of str
        The other rows (a row may have fewer or more cells than the header).
    alignment : tuple of str
        A Markdown table's alignment row (``---``, ``---:``); empty for CSV and TSV.
    """

    header: list[str]
    rows: list[list[str]]
    alignment: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tree:
    """One side of the comparison: a results folder and the paths to hide in its text files.

    Attributes
    ----------
    results : Path
        The results folder, resolved.
    replacements : tuple of (str, str)
        ``(path, placeholder)`` pairs, longest path first, applied to text before comparing.
    """

    results: Path
    replacements: tuple[tuple[str, str], ...]


@dataclass
class Comparison:
    """What :func:`compare_trees` found.

    Attributes
    ----------
    only_before, only_after : list of PurePosixPath
        Compared files (not skipped ones) present in one tree only, relative to its results folder.
    verdicts : dict
        Every other relative path (common or skipped) with its :class:`Verdict`.
    """

    only_before: list[PurePosixPath] = field(default_factory=list)
    only_after: list[PurePosixPath] = field(default_factory=list)
    verdicts: dict[PurePosixPath, Verdict] = field(default_factory=dict)

    @property
    def differing(self) -> list[PurePosixPath]:
        """The relative paths whose outcome is ``differ``, sorted."""
        return sorted(path for path, verdict in self.verdicts.items() if verdict.outcome == DIFFER)

    @property
    def unchanged(self) -> bool:
        """True when no file differs and no compared file is in one tree only."""
        return not (self.only_before or self.only_after or self.differing)


@dataclass
class NestedWalk:
    """What :func:`nested_differences` gathers while walking two nested values.

    Attributes
    ----------
    problems : list of str
        One line per difference outside ignored keys.
    ignored : set of str
        Ignored keys under which the two values differed.
    tensors : int
        The number of tensor pairs compared.
    """

    problems: list[str] = field(default_factory=list)
    ignored: set[str] = field(default_factory=set)
    tensors: int = 0


# --- the two trees --------------------------------------------------------------------------


def make_tree(results: Path, source: Path | None) -> Tree:
    """The :class:`Tree` of a results folder whose run folder is its parent.

    Parameters
    ----------
    results : Path
        An existing results folder.
    source : Path or None
        The source checkout the run used, hidden in text files like the run folder; None: none.

    Returns
    -------
    Tree
        With the run folder and the source (both resolved) as replacements, longest first, so a
        path inside the other is replaced by its own placeholder.
    """
    results = results.resolve()
    pairs = [(str(results.parent), RUN_PLACEHOLDER)]
    if source is not None:
        pairs.append((str(source.resolve()), SOURCE_PLACEHOLDER))
    pairs.sort(key=lambda pair: len(pair[0]), reverse=True)
    return Tree(results=results, replacements=tuple(pairs))


def relative_files(results: Path) -> set[PurePosixPath]:
    """Every file under ``results`` (recursively, links to files included), relative to it."""
    return {PurePosixPath(path.relative_to(results).as_posix()) for path in results.rglob("*") if path.is_file()}


def is_skipped(relative: PurePosixPath) -> bool:
    """True for files that hold no computed result: logs, Snakemake timestamps, benchmark files."""
    return (
        relative.suffix in SKIPPED_SUFFIXES
        or relative.name in SKIPPED_NAMES
        or any(part in SKIPPED_FOLDERS for part in relative.parts[:-1])
    )


# --- text -----------------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """A file's text as UTF-8; undecodable bytes are kept (as surrogates) so they still compare."""
    return path.read_text(encoding="utf-8", errors="surrogateescape")


def replace_paths(text: str, replacements: Iterable[tuple[str, str]]) -> str:
    """``text`` with every ``(path, placeholder)`` pair's path replaced, in the given order."""
    for path, placeholder in replacements:
        text = text.replace(path, placeholder)
    return text


def parse_delimited(text: str, delimiter: str) -> Table:
    """A CSV or TSV text as a :class:`Table` (the first row is the header; none: empty)."""
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    return Table(header=rows[0] if rows else [], rows=rows[1:])


def markdown_cells(line: str) -> list[str]:
    r"""The stripped cells of one Markdown table row; ``\|`` inside a cell does not split it."""
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]


def markdown_table(lines: list[list[str]]) -> Table:
    """The :class:`Table` of a Markdown table's rows of cells (the first is the header)."""
    if len(lines) > 1 and all(re.fullmatch(r":?-+:?", cell) for cell in lines[1]):
        return Table(header=lines[0], rows=lines[2:], alignment=tuple(lines[1]))
    return Table(header=lines[0], rows=lines[1:])


def parse_markdown(text: str) -> tuple[list[str], list[Table]]:
    """The prose lines and the tables of a Markdown text.

    Returns
    -------
    prose : list of str
        The lines outside tables, each table replaced by one ``<table>`` line (so a table moved
        within the text is a difference).
    tables : list of Table
        Each run of lines starting with ``|``: the first is the header, the second the alignment
        row where it is one (cells of dashes and colons), the others the rows.
    """
    prose: list[str] = []
    tables: list[Table] = []
    block: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            block.append(markdown_cells(line))
            continue
        if block:
            tables.append(markdown_table(block))
            prose.append("<table>")
            block = []
        prose.append(line)
    return prose[:-1], tables


def compare_tables(before: Table, after: Table, volatile: re.Pattern[str]) -> tuple[str | None, set[str]]:
    """Compare two tables cell by cell, leaving out the volatile columns.

    Parameters
    ----------
    before, after : Table
        The two tables; their headers and alignment rows must be equal and they must have as
        many rows.
    volatile : re.Pattern
        Searched in each column name: a match leaves the column out.

    Returns
    -------
    problem : str or None
        The first difference outside volatile columns, None when there is none.
    left_out : set of str
        The volatile columns whose cells differ (empty when ``problem`` is not None).
    """
    if before.header != after.header:
        return f"header {before.header} != {after.header}", set()
    if before.alignment != after.alignment:
        return f"alignment row {list(before.alignment)} != {list(after.alignment)}", set()
    if len(before.rows) != len(after.rows):
        return f"{len(before.rows)} rows != {len(after.rows)} rows", set()
    dropped = {index for index, name in enumerate(before.header) if volatile.search(name)}
    left_out: set[str] = set()
    for number, (row_before, row_after) in enumerate(zip(before.rows, after.rows), start=1):
        if len(row_before) != len(row_after):
            return f"row {number}: {len(row_before)} cells != {len(row_after)} cells", set()
        for index, (cell_before, cell_after) in enumerate(zip(row_before, row_after)):
            if cell_before == cell_after:
                continue
            name = before.header[index] if index < len(before.header) else f"column {index + 1}"
            if index not in dropped:
                return f"row {number}, column {name!r}: {cell_before!r} != {cell_after!r}", set()
            left_out.add(name)
    return None, left_out


def compare_markdown(before: str, after: str, volatile: re.Pattern[str]) -> tuple[str | None, set[str]]:
    """Compare two Markdown texts: prose line by line, tables by :func:`compare_tables`.

    Returns
    -------
    problem : str or None
        The first difference outside volatile table columns, None when there is none.
    left_out : set of str
        The volatile columns whose cells differ, over all tables.
    """
    prose_before, tables_before = parse_markdown(before)
    prose_after, tables_after = parse_markdown(after)
    if prose_before != prose_after:
        return "text outside tables differs", set()
    left_out: set[str] = set()
    for number, (table_before, table_after) in enumerate(zip(tables_before, tables_after), start=1):
        problem, columns = compare_tables(table_before, table_after, volatile)
        if problem is not None:
            return f"table {number}: {problem}", set()
        left_out |= columns
    return None, left_out


def compare_json(before: str, after: str, volatile: re.Pattern[str]) -> tuple[str | None, set[str]]:
    """Compare two JSON texts value by value, leaving out keys (at any depth) matching ``volatile``.

    Returns
    -------
    problem : str or None
        The first difference outside volatile keys (or a parse error), None when there is none.
    left_out : set of str
        The volatile keys whose values differ (or that are in one text only).
    """
    try:
        value_before, value_after = json.loads(before), json.loads(after)
    except json.JSONDecodeError as error:
        return f"not JSON: {error}", set()
    walk = nested_differences(value_before, value_after, "$", lambda key: bool(volatile.search(key)))
    return (walk.problems[0] if walk.problems else None), walk.ignored


def compare_text(before: Path, after: Path, trees: tuple[Tree, Tree], volatile: re.Pattern[str]) -> Verdict:
    """Compare two text files whose bytes differ (see the module's outcomes).

    The run folder and source of each tree are replaced first; then CSV/TSV and Markdown tables
    are compared by column and JSON by key, leaving out volatile names. Other text must be equal.
    """
    text_before = replace_paths(read_text(before), trees[0].replacements)
    text_after = replace_paths(read_text(after), trees[1].replacements)
    if text_before == text_after:
        return Verdict(PATHS_REPLACED)
    suffix = before.suffix
    if suffix in (".csv", ".tsv"):
        delimiter = "\t" if suffix == ".tsv" else ","
        table_before, table_after = parse_delimited(text_before, delimiter), parse_delimited(text_after, delimiter)
        problem, left_out = compare_tables(table_before, table_after, volatile)
    elif suffix == ".md":
        problem, left_out = compare_markdown(text_before, text_after, volatile)
    elif suffix == ".json":
        problem, left_out = compare_json(text_before, text_after, volatile)
    else:
        return Verdict(DIFFER, detail="text differs (after replacing the run and source paths)")
    if problem is not None:
        return Verdict(DIFFER, detail=problem)
    if left_out:
        return Verdict(WITHOUT_VOLATILE, left_out=frozenset(left_out))
    return Verdict(SAME_CONTENT, detail="same cells, other formatting")


# --- models ---------------------------------------------------------------------------------


def is_tensor(value: Any) -> bool:
    """True for a PyTorch tensor (without importing PyTorch where no module imported it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def tensors_equal(before: Any, after: Any) -> bool:
    """True when two tensors have the same dtype, shape and values (NaN equal to NaN)."""
    import torch

    if before.dtype != after.dtype or before.shape != after.shape:
        return False
    before, after = before.detach().cpu(), after.detach().cpu()
    if torch.equal(before, after):
        return True
    if not (before.is_floating_point() or before.is_complex()):
        return False
    nan_before, nan_after = torch.isnan(before), torch.isnan(after)
    return torch.equal(nan_before, nan_after) and torch.equal(before[~nan_before], after[~nan_after])


def nested_differences(
    before: Any, after: Any, where: str, ignore_key: Callable[[str], bool], walk: NestedWalk | None = None
) -> NestedWalk:
    """Compare two nested values (dicts, lists, tuples, tensors, scalars) exactly.

    Parameters
    ----------
    before, after : Any
        The two values; scalars must have the same type and be equal (NaN equal to NaN).
    where : str
        The label of these values in the problems (keys and indices are appended).
    ignore_key : callable
        Called with each dict key (as text); True leaves the key's values out (recorded in
        ``walk.ignored`` when they differ or the key is in one dict only).
    walk : NestedWalk or None
        Where to gather; None: a new one.

    Returns
    -------
    NestedWalk
        ``walk`` with this pair's problems, ignored keys and tensor count added.
    """
    walk = NestedWalk() if walk is None else walk
    if is_tensor(before) or is_tensor(after):
        walk.tensors += 1
        if not (is_tensor(before) and is_tensor(after) and tensors_equal(before, after)):
            walk.problems.append(f"{where}: tensors differ (dtype, shape or values)")
    elif isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            label = f"{where}.{key}"
            if ignore_key(str(key)):
                if key not in before or key not in after:
                    walk.ignored.add(str(key))
                elif nested_differences(before[key], after[key], label, ignore_key).problems:
                    walk.ignored.add(str(key))
            elif key not in before or key not in after:
                walk.problems.append(f"{label}: in {'after' if key not in before else 'before'} only")
            else:
                nested_differences(before[key], after[key], label, ignore_key, walk)
    elif isinstance(before, list | tuple) and type(before) is type(after):
        if len(before) != len(after):
            walk.problems.append(f"{where}: {len(before)} items != {len(after)} items")
        for index, (item_before, item_after) in enumerate(zip(before, after)):
            nested_differences(item_before, item_after, f"{where}[{index}]", ignore_key, walk)
    elif type(before) is not type(after):
        walk.problems.append(f"{where}: {type(before).__name__} != {type(after).__name__}")
    elif before != before and after != after:  # NaN (or another value unequal to itself) on both sides
        pass
    elif before != after:
        walk.problems.append(f"{where}: {before!r} != {after!r}")
    return walk


def compare_model(before: Path, after: Path) -> Verdict:
    """Compare two model files (``torch.load`` with ``weights_only=True``, on the CPU).

    Every tensor must have the same dtype, shape and values, every other field the same value;
    fields under a ``provenance`` key (at any depth) are left out.
    """
    import torch

    try:
        model_before = torch.load(before, map_location="cpu", weights_only=True)
        model_after = torch.load(after, map_location="cpu", weights_only=True)
    except Exception as error:  # any file PyTorch cannot load is a difference to report
        return Verdict(DIFFER, detail=f"cannot load: {error}")
    walk = nested_differences(model_before, model_after, "model", lambda key: key == MODEL_VOLATILE_KEY)
    if walk.problems:
        more = f" (and {len(walk.problems) - 3} more)" if len(walk.problems) > 3 else ""
        return Verdict(DIFFER, detail="; ".join(walk.problems[:3]) + more)
    note = f"{walk.tensors} tensors equal"
    if walk.ignored:
        return Verdict(WITHOUT_VOLATILE, left_out=frozenset(walk.ignored), detail=note)
    return Verdict(SAME_CONTENT, detail=note)


# --- images ---------------------------------------------------------------------------------


def read_image(path: Path) -> np.ndarray | None:
    """An image's pixels: ``.tif``/``.tiff`` by tifffile, ``.png`` by OpenCV unchanged; None if unreadable."""
    if path.suffix == ".png":
        import cv2

        return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    import tifffile

    try:
        return tifffile.imread(path)
    except Exception:  # an unreadable image is reported as a difference, not raised
        return None


def compare_image(before: Path, after: Path) -> Verdict:
    """Compare two images' dtype, shape and pixels (NaN equal to NaN); other metadata may differ."""
    pixels_before, pixels_after = read_image(before), read_image(after)
    if pixels_before is None or pixels_after is None:
        return Verdict(DIFFER, detail="cannot read the image")
    if pixels_before.dtype != pixels_after.dtype or pixels_before.shape != pixels_after.shape:
        return Verdict(
            DIFFER,
            detail=f"{pixels_before.dtype} {pixels_before.shape} != {pixels_after.dtype} {pixels_after.shape}",
        )
    equal_nan = pixels_before.dtype.kind in "fc"
    if not np.array_equal(pixels_before, pixels_after, equal_nan=equal_nan):
        changed = int(np.count_nonzero(pixels_before != pixels_after))
        return Verdict(DIFFER, detail=f"{changed} of {pixels_before.size} pixel values differ")
    return Verdict(SAME_CONTENT, detail="same pixels, other bytes")


# --- the comparison -------------------------------------------------------------------------


def compare_file(relative: PurePosixPath, trees: tuple[Tree, Tree], volatile: re.Pattern[str]) -> Verdict:
    """The :class:`Verdict` for one relative path present in both trees (and not skipped)."""
    before, after = trees[0].results / relative, trees[1].results / relative
    if before.read_bytes() == after.read_bytes():
        return Verdict(IDENTICAL)
    suffix = relative.suffix
    if suffix in TEXT_SUFFIXES:
        return compare_text(before, after, trees, volatile)
    if suffix == MODEL_SUFFIX:
        return compare_model(before, after)
    if suffix in IMAGE_SUFFIXES:
        return compare_image(before, after)
    return Verdict(DIFFER, detail="bytes differ (no content comparison for this kind of file)")


def compare_trees(
    before: Path,
    after: Path,
    volatile: re.Pattern[str],
    sources: tuple[Path | None, Path | None] = (None, None),
) -> Comparison:
    """Compare every file of two results folders.

    Parameters
    ----------
    before, after : Path
        The two results folders (their parents are the run folders).
    volatile : re.Pattern
        Names of table columns and JSON keys to leave out where they differ.
    sources : tuple of (Path or None)
        The source checkouts of the two runs, hidden in text files; None: not hidden.

    Returns
    -------
    Comparison
        Skipped files get ``SKIPPED`` whether they are in one tree or both.

    Raises
    ------
    NotADirectoryError
        If either results folder is not a folder.
    """
    for results in (before, after):
        if not results.is_dir():
            raise NotADirectoryError(f"not a results folder: {results}")
    trees = (make_tree(before, sources[0]), make_tree(after, sources[1]))
    files_before, files_after = relative_files(trees[0].results), relative_files(trees[1].results)
    comparison = Comparison()
    for relative in sorted(files_before | files_after):
        if is_skipped(relative):
            comparison.verdicts[relative] = Verdict(SKIPPED)
        elif relative not in files_after:
            comparison.only_before.append(relative)
        elif relative not in files_before:
            comparison.only_after.append(relative)
        else:
            comparison.verdicts[relative] = compare_file(relative, trees, volatile)
    return comparison


# --- the summary ----------------------------------------------------------------------------


def extension(relative: PurePosixPath) -> str:
    """The label of a file's kind in the summary: its suffix, or its name for dotfiles and ``(none)``."""
    return relative.suffix or (relative.name if relative.name.startswith(".") else "(none)")


def count_table(comparison: Comparison) -> list[str]:
    """The counts per extension and outcome as aligned text lines, with a total row."""
    counts = Counter((extension(path), verdict.outcome) for path, verdict in comparison.verdicts.items())
    outcomes = [outcome for outcome in OUTCOMES if any(key[1] == outcome for key in counts)]
    kinds = sorted({kind for kind, _ in counts})
    rows = [["extension", *outcomes]]
    rows += [[kind, *(str(counts[(kind, outcome)]) for outcome in outcomes)] for kind in kinds]
    rows.append(["total", *(str(sum(counts[(kind, outcome)] for kind in kinds)) for outcome in outcomes)])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [format_row(row, widths) for row in rows]


def format_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One line of an aligned text table: the first cell left-aligned, the others right-aligned."""
    padded = [cells[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:]))]
    return "  ".join(padded).rstrip()


def summary(comparison: Comparison, before: Path, after: Path) -> str:
    """The human-readable report of a :class:`Comparison` of ``before`` and ``after``."""
    lines = [f"before: {before}", f"after:  {after}", ""]
    for side, paths in (("before", comparison.only_before), ("after", comparison.only_after)):
        lines.append(f"only in {side}: {len(paths)}")
        lines += [f"  {path}" for path in paths]
    lines += ["", *count_table(comparison), ""]
    left_out: dict[str, set[str]] = {}
    for path, verdict in comparison.verdicts.items():
        left_out.setdefault(extension(path), set()).update(verdict.left_out)
    lines.append("volatile columns and keys that differed (left out):")
    lines += [f"  {kind}: {', '.join(sorted(names))}" for kind, names in sorted(left_out.items()) if names]
    if not any(left_out.values()):
        lines.append("  none")
    models = sorted(
        (path, verdict)
        for path, verdict in comparison.verdicts.items()
        if path.suffix == MODEL_SUFFIX and verdict.outcome not in (DIFFER, SKIPPED)
    )
    if models:
        lines.append("models:")
        lines += [f"  {path}: {verdict.outcome}, {verdict.detail}" for path, verdict in models]
    lines.append(f"differing files: {len(comparison.differing)}")
    lines += [f"  {path}: {comparison.verdicts[path].detail}" for path in comparison.differing]
    if comparison.unchanged:
        lines.append("UNCHANGED: every compared file agrees and both trees hold the same files")
    else:
        lines.append("CHANGED: files differ or are in one tree only")
    return "\n".join(lines)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line's arguments (``argv`` None: ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the results folder of the run before the change")
    parser.add_argument("after", type=Path, help="the results folder of the run after the change")
    parser.add_argument("--source-before", type=Path, help="the source checkout of the run before (hidden in text)")
    parser.add_argument("--source-after", type=Path, help="the source checkout of the run after (hidden in text)")
    parser.add_argument(
        "--ignore-columns",
        default=DEFAULT_VOLATILE,
        metavar="REGEX",
        help="column and JSON key names to leave out where they differ (searched, case-insensitive; "
        "default: timing, memory and provenance names)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Compare the two results folders named in ``argv``, print the summary.

    Returns
    -------
    int
        0 when nothing differs and no compared file is in one tree only, 1 otherwise; 2 when an
        argument is wrong (also argparse's status for a bad command line).
    """
    arguments = parse_arguments(argv)
    try:
        volatile = re.compile(arguments.ignore_columns, re.IGNORECASE)
    except re.error as error:
        print(f"compare_runs: --ignore-columns is not a regular expression: {error}", file=sys.stderr)
        return 2
    try:
        comparison = compare_trees(
            arguments.before, arguments.after, volatile, (arguments.source_before, arguments.source_after)
        )
    except NotADirectoryError as error:
        print(f"compare_runs: {error}", file=sys.stderr)
        return 2
    print(summary(comparison, arguments.before, arguments.after))
    return 0 if comparison.unchanged else 1


if __name__ == "__main__":
    sys.exit(main())
