"""Fixtures of the generator tests (helpers in generation_cases.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dlcr_data.build.parse import OracleParser
from dlcr_data.demo.plan import DemoConfig
from dlcr_data.demo.render import _plan, render_shot


@pytest.fixture(scope="module")
def people() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(outfit text, RGB, canonical garment map) of the first train shot of every demo identity, rendered in memory."""
    # each person's own outfits (no shared wardrobe): a donor's outfit always differs from the source's
    config = DemoConfig(seed=0, num_ids=8, images_per_camera=1, traits="subtle", wardrobe=0)
    plan, lut = _plan(config), OracleParser("demo").lut
    out, seen = [], set()
    for shot in plan.shots:
        if shot.pid in seen:
            continue
        seen.add(shot.pid)
        rgb, labels = render_shot(config, shot)
        out.append((plan.outfit(shot).text(), rgb, lut[labels]))
    return out
