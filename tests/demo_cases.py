"""The tiny demo config most tests share (the `tiny_demo` fixture in conftest.py renders it), for tests that also
need its plan."""

from __future__ import annotations

from dlcr_data.demo import DemoConfig

# The demo before issue 15: 1-3 outfits drawn freely, each person's own, every colour alike, subtle traits. One-outfit
# people and outfits that keep their garment types are the odd cases many tests need.
FREE_OUTFITS = {"min_outfits": 1, "max_outfits": 3, "garment_change": "any", "palette": "uniform"}
FREE_OUTFITS |= {"traits": "subtle", "wardrobe": 0}
# 6 identities, 2 images per (outfit, camera); 32 train images of 3 identities.
TINY_DEMO = DemoConfig(num_ids=6, images_per_camera=2, **FREE_OUTFITS)
