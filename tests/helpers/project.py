"""The checkout's root and the configurations the tests read."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# The tiny configuration of the workflow tests (a complete run takes minutes).
TINY_CONFIG = ROOT / ".test" / "config.yaml"


def demo() -> dict:
    """The demo configuration (config/demo.yaml), a fresh copy per call."""
    return yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
