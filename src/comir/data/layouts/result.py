"""What a record holds once recognised: :class:`Layout`, its pairs and its prebuilt test sets.

Contract: plain frozen data classes and the vocabulary they share (:data:`KINDS` of record,
:data:`RECORD_SPLITS`, :data:`MAX_LISTED`), built by :func:`comir.data.layouts.detect.detect_layout`
and read by :mod:`comir.data.convert` and :mod:`comir.testset.prebuilt`; nothing here touches
the disk. :meth:`Layout.testset` raises :class:`~comir.io.InputError` naming the test sets found.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from comir.data.layouts.tree import zurich_number
from comir.io import InputError

__all__ = ["KINDS", "MAX_LISTED", "RECORD_SPLITS", "Layout", "PairFiles", "PrebuiltPart", "PrebuiltTestSet"]

KINDS = ("bfshg-comir", "bfshg-multiregeval", "zurich", "multiregeval-eval")
RECORD_SPLITS = ("train", "val", "tuning", "test")
#: How many problems (or cases) a message lists before it stops.
MAX_LISTED = 10


@dataclass(frozen=True)
class PairFiles:
    """One aligned pair of a record: its id, split and one file per modality."""

    id: str
    split: str
    files: Mapping[str, Path]  # modality name ("SHG", "BF") -> file
    folder: str  # folder relative to the record root (for messages)


@dataclass(frozen=True)
class PrebuiltPart:
    """One folder (or one transform level) of a prebuilt transformed test set."""

    folder: Path
    stratum: str | None  # None: derived from the initial displacement
    metadata: Path | None  # the CSV with the corner columns, if one was found
    files: Mapping[tuple[str, str, str], Path]  # (id, modality, "R" | "T") -> file

    def ids(self) -> list[str]:
        """The case ids of this part, sorted."""
        return sorted({key[0] for key in self.files})

    def roles(self) -> dict[str, set[str]]:
        """Modality -> the roles ("R", "T") present for it."""
        found: dict[str, set[str]] = defaultdict(set)
        for _, modality, role in self.files:
            found[modality].add(role)
        return dict(found)


@dataclass(frozen=True)
class PrebuiltTestSet:
    """A record's transformed test set: reference (R) and transformed (T) patches + corners."""

    name: str
    dataset: str  # "bfshg" | "zurich"
    source: str  # "comir" (R_/T_ files + CSV) | "multiregeval" (patch_tlevel folders)
    parts: tuple[PrebuiltPart, ...]
    bgr_modalities: tuple[str, ...] = ()  # modalities whose patches hold B, G, R (reversed on import)

    def modalities(self) -> dict[str, set[str]]:
        """Modality -> the roles ("R", "T") present for it in any part."""
        found: dict[str, set[str]] = defaultdict(set)
        for part in self.parts:
            for modality, roles in part.roles().items():
                found[modality] |= roles
        return dict(found)

    def n_cases(self) -> int:
        """Number of cases over all parts."""
        return sum(len(part.ids()) for part in self.parts)


@dataclass(frozen=True)
class Layout:
    """What :func:`detect_layout` found under an unpacked record."""

    kind: str  # one of KINDS
    root: Path
    dataset: str  # "bfshg" | "zurich" | "mixed" (evaluation record with both)
    pairs: tuple[PairFiles, ...] = ()
    zurich_images: Mapping[str, Path] = field(default_factory=dict)  # "zh10" -> file
    testsets: tuple[PrebuiltTestSet, ...] = ()
    orphans: tuple[str, ...] = ()  # pair files without a partner (messages)
    notes: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Pairs per split (for Zurich: the number of images under ``"images"``)."""
        if self.kind == "zurich":
            return {"images": len(self.zurich_images)}
        counts = Counter(pair.split for pair in self.pairs)
        return {split: counts[split] for split in RECORD_SPLITS if counts[split]}

    def testset(self, name: str | None) -> PrebuiltTestSet:
        """The prebuilt test set ``name``; ``None`` means the record's only one.

        Parameters
        ----------
        name : str or None
            The test set's name; None: the record's only test set.

        Returns
        -------
        PrebuiltTestSet
            The test set.

        Raises
        ------
        comir.io.InputError
            If there is no such test set (or, for None, not exactly one), naming the test sets found.
        """
        if name is None and len(self.testsets) == 1:
            return self.testsets[0]
        for testset in self.testsets:
            if testset.name == name:
                return testset
        known = ", ".join(t.name for t in self.testsets) or "none"
        wanted = (
            "a prebuilt test set (give its name: testsets.<name>.prebuilt)" if name is None
            else f"prebuilt test set {name!r}"
        )  # fmt: skip
        raise InputError(f"no {wanted} under {self.root}; found: {known}")

    def describe(self) -> str:
        """A few lines for the log: kind, pairs per split (or images), prebuilt test sets, notes."""
        lines = [f"{self.kind} record at {self.root} ({self.dataset})"]
        if self.kind == "zurich":
            lines.append(f"  images: {', '.join(sorted(self.zurich_images, key=zurich_number))}")
        else:
            lines.append(f"  pairs per split: {self.counts() or 'none'}")
        for testset in self.testsets:
            meta = sum(part.metadata is not None for part in testset.parts)
            mods = ", ".join(f"{m}: {'+'.join(sorted(r))}" for m, r in sorted(testset.modalities().items()))
            lines.append(
                f"  prebuilt test set {testset.name!r}: {testset.n_cases()} case(s) in {len(testset.parts)} "
                f"part(s), {meta} with metadata; patches {mods}"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)
