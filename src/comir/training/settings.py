"""The settings of one training run, its learning-rate schedule and the networks' architectures.

docs/method.md, section 5: the ``training`` section of a dataset or variant
(:class:`TrainingConfig`), the checks of its loss options, the learning rate of
each step, and the two networks' :class:`~comir.network.model.TiramisuConfig`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from comir.imaging.preprocess import SLOTS
from comir.network.model import TiramisuConfig
from comir.training.loss import NEGATIVE_STRATEGIES


@dataclass(frozen=True)
class TrainingConfig:
    """The settings of one training run: the ``training`` section (schema defaults), seed and execution."""

    epochs: int = 23
    steps_per_epoch: int = 32
    batch_size: int = 32
    patch_size: int = 128
    optimizer: str = "sgd"  # "sgd" | "adam"
    learning_rate: float = 1e-2
    learning_rate_schedule: str = "constant"  # "constant" | "cosine"
    warmup_steps: int = 0
    momentum: float = 0.9
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    critic: str = "mse"
    temperature: float = 0.5
    l1_activation: float = 1e-4
    l2_activation: float = 1e-4
    equivariance: bool = True
    rotation: bool = True
    flips: bool = True
    augmentation: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # per slot (comir.training.augment)
    # Ablations beyond the paper, each off by default (docs/method.md, section 5, "Ablations").
    elastic: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # shared elastic deformation
    critic_highpass_sigma: float | None = None  # CoMIRs high-passed before the critic
    structure_penalty: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {kind, weight}
    self_similarity: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {weight, radius}
    shared_blocks: int = 0  # down blocks (with their transitions) shared by the two networks
    third_view: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {from, view}: a third network
    # Beyond the paper, off by default (docs/method.md, sections 3 and 5); {} keeps the paper's loss.
    negatives: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {strategy, min_distance_px, beta}
    anatomy: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # {masks, weight, block_size, ...}
    validation_batches: int = 4
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    mixed_precision: bool = True  # CUDA only
    seed: int = 0
    # How the run is executed, not what it computes (left out of the resume fingerprint):
    threads: int = 1
    workers: int | None = None  # loader processes; None: see loader_workers

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], seed: int, threads: int, workers: int | None = None) -> TrainingConfig:
        """From a validated ``training`` section, the run's seed, threads and loader workers.

        Parameters
        ----------
        cfg : Mapping[str, Any]
            The ``training`` section; its keys are the fields of :class:`TrainingConfig`.
        seed : int
            The run's random seed.
        threads : int
            Number of CPU threads of the run.
        workers : int or None, optional
            Number of loader processes; ``None`` (default): chosen by
            :func:`comir.training.sampler.loader_workers`.

        Returns
        -------
        TrainingConfig
            The settings of the run.
        """
        return cls(seed=seed, threads=threads, workers=workers, **dict(cfg))

    @property
    def negative_settings(self) -> dict[str, Any]:
        """``negatives`` with the schema's defaults (:data:`NEGATIVES_DEFAULTS`) and ``min_distance_px`` filled in.

        An absent ``min_distance_px`` is the patch size: two patches whose centres are closer overlap.
        """
        settings = {**NEGATIVES_DEFAULTS, **self.negatives}
        if settings.get("min_distance_px") is None:
            settings["min_distance_px"] = float(self.patch_size)
        return settings

    @property
    def anatomy_settings(self) -> dict[str, Any] | None:
        """``anatomy`` with the schema's defaults (:data:`ANATOMY_DEFAULTS`), or ``None`` when it is off."""
        return {**ANATOMY_DEFAULTS, **self.anatomy} if self.anatomy else None

    @property
    def needs_patch_info(self) -> bool:
        """Whether the loss needs the patches' images, centres or masks.

        As :meth:`comir.training.sampler.PatchSampler.sample_with_info` gives them.
        """
        return bool(self.anatomy) or self.negative_settings["strategy"] == "exclude_near"


# The schema's defaults inside ``training.negatives`` and ``training.anatomy`` (tests/test_anatomy_loss.py checks
# them against the schema), for configurations built in code, where the validator fills nothing in.
NEGATIVES_DEFAULTS: dict[str, Any] = {"strategy": "all", "beta": 1.0}
ANATOMY_DEFAULTS: dict[str, Any] = {
    "masks": "auto",
    "block_size": 16,
    "tissue_from": "A",
    "optical_density": 0.15,
    "signal_from": "B",
    "signal_percentile": 75.0,
}


def check_loss_options(cfg: TrainingConfig) -> None:
    """Refuse ``negatives`` and ``anatomy`` settings the loss cannot use (before any work is done).

    Parameters
    ----------
    cfg : TrainingConfig
        The run's settings.

    Raises
    ------
    ValueError
        If ``negatives.strategy`` is not one of :data:`comir.training.loss.NEGATIVE_STRATEGIES`, or
        ``anatomy`` is on without a ``weight`` or with a ``block_size`` that does not divide the patch size.
    """
    strategy = cfg.negative_settings["strategy"]
    if strategy not in NEGATIVE_STRATEGIES:
        raise ValueError(f"training.negatives.strategy must be one of {NEGATIVE_STRATEGIES}, got {strategy!r}")
    settings = cfg.anatomy_settings
    if settings is not None:
        if "weight" not in settings:
            raise ValueError("training.anatomy needs a weight")
        if cfg.patch_size % int(settings["block_size"]):
            raise ValueError(
                f"training.anatomy.block_size {settings['block_size']} must divide the patch size {cfg.patch_size}"
            )


def learning_rate_at(step: int, cfg: TrainingConfig) -> float:
    """The learning rate of optimisation step ``step`` (0-based) of the run.

    ``constant``: ``learning_rate`` (the paper's). ``cosine``: half a cosine from
    ``learning_rate`` to 0 over the steps after the warm-up. ``warmup_steps``:
    a linear ramp from ``learning_rate / (warmup_steps + 1)`` up to it first.
    Computed from the step alone, so a resumed run continues the schedule.

    Parameters
    ----------
    step : int
        The optimisation step, 0-based.
    cfg : TrainingConfig
        The run's settings: ``learning_rate``, ``learning_rate_schedule``, ``warmup_steps``, and
        ``epochs * steps_per_epoch`` steps in all.

    Returns
    -------
    float
        The learning rate.

    Raises
    ------
    ValueError
        If, after the warm-up, ``learning_rate_schedule`` is neither ``constant`` nor ``cosine``.
    """
    base = float(cfg.learning_rate)
    warmup = int(cfg.warmup_steps)
    if step < warmup:
        return base * (step + 1) / (warmup + 1)
    if cfg.learning_rate_schedule == "constant":
        return base
    if cfg.learning_rate_schedule != "cosine":
        raise ValueError(f"learning_rate_schedule must be constant or cosine, got {cfg.learning_rate_schedule!r}")
    total = max(1, cfg.epochs * cfg.steps_per_epoch - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / total))


def model_configs(dataset: Mapping[str, Any]) -> dict[str, TiramisuConfig]:
    """The two networks' architectures: same hyper-parameters, each with its modality's input channels.

    Parameters
    ----------
    dataset : Mapping[str, Any]
        A dataset's configuration: its ``model`` section (the :class:`~comir.network.model.TiramisuConfig`
        fields but ``in_channels``) and ``modalities[slot]["channels"]`` per slot.

    Returns
    -------
    dict[str, TiramisuConfig]
        The configuration of the slots ``A`` and ``B``.
    """
    model = dict(dataset["model"])
    for key in ("down_blocks", "up_blocks"):
        if model.get(key) is not None:
            model[key] = tuple(model[key])
    return {slot: TiramisuConfig(in_channels=dataset["modalities"][slot]["channels"], **model) for slot in SLOTS}
