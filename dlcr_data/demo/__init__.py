"""The embedded demo dataset: a procedurally rendered clothes-changing re-ID set, deterministic from a seed.

People keep their build, proportions, skin, hair and gait across 1-3 outfits drawn from a shared colour
palette; four cameras differ in background, light, scale and viewpoint. It is written in the LTCC layout (plus
ground-truth parsing masks and outfit texts), so the same loader code reads it; nothing is downloaded.
"""

from __future__ import annotations

from dlcr_data.demo.labels import LABELS, colourise
from dlcr_data.demo.plan import DemoConfig, Plan
from dlcr_data.demo.render import default_demo_root, is_complete, render_demo

__all__ = ["LABELS", "DemoConfig", "Plan", "colourise", "default_demo_root", "is_complete", "render_demo"]
