"""A model-free generator: recolour each garment to the colour named in the target text, keeping its texture.

Cheap and deterministic (CPU, ~1 ms per 128x64 image), for pipeline tests, demos and as a colour-only
augmentation baseline. Works in CIE Lab: the region's lightness pattern (shading, stripes, folds) is kept around
the target lightness, and chroma is set to the target's.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..colors import colour_rgb, find_colour, lab_to_rgb, rgb_to_lab
from ..garments import CLASS_ID
from .base import GenerationRequest

# Target-text part -> the garment classes it recolours ("top | bottom | shoes").
PART_CLASSES: tuple[tuple[int, ...], ...] = (
    (CLASS_ID["upper"], CLASS_ID["dress"]),
    (CLASS_ID["lower"],),
    (CLASS_ID["shoes"],),
)
_MIN_CONTRAST = 0.35  # never squeeze the lightness pattern below this fraction (near-black/white targets)
_JITTER_L = 2.0  # per-seed lightness jitter (Lab L units): variants of one colour are not pixel-identical


_LAB_CACHE: dict[str, np.ndarray] = {}


def _target_lab(name: str) -> np.ndarray:
    if name not in _LAB_CACHE:
        _LAB_CACHE[name] = rgb_to_lab(np.array(colour_rgb(name), np.float64))
    return _LAB_CACHE[name]


def recolour_pixels(rgb: np.ndarray, target: np.ndarray, keep_chroma: float = 0.1, shift_l: float = 0.0) -> np.ndarray:
    """Recolour (N, 3) RGB pixels of one garment to the Lab colour `target`; returns (N, 3) uint8."""
    lab = rgb_to_lab(rgb)
    light = lab[:, 0]
    mean = lab.mean(0)
    t_l = float(np.clip(target[0] + shift_l, 0.0, 100.0))
    # Keep the lightness pattern at full contrast where the target leaves room; squeeze it otherwise.
    spread = 3.0 * float(light.std()) + 1e-6
    k = float(np.clip(min(t_l, 100.0 - t_l) / spread, _MIN_CONTRAST, 1.0))
    new_l = np.clip(t_l + k * (light - mean[0]), 0.0, 100.0)
    # Shading scales linear RGB, which scales a*, b* roughly like (L + 16): darker folds are less saturated.
    shade = ((new_l + 16.0) / (t_l + 16.0))[:, None]
    chroma = shade * target[1:] + keep_chroma * (lab[:, 1:] - mean[1:])
    out = lab_to_rgb(np.concatenate([new_l[:, None], chroma], 1))
    return np.rint(out).astype(np.uint8)


class RecolorGenerator:
    """Recolours upper+dress / lower / shoes to the first colour word of each target-text part, inside the mask."""

    name = "recolor"
    model_id: str | None = None

    def __init__(self, keep_chroma: float = 0.1, jitter: float = _JITTER_L):
        self.keep_chroma = keep_chroma
        self.jitter = jitter

    def recolour(self, request: GenerationRequest) -> Image.Image:
        src = np.asarray(request.image.convert("RGB"))
        garments = np.asarray(request.garment_map)
        mask = np.asarray(request.mask, bool)
        if garments.shape != src.shape[:2] or mask.shape != src.shape[:2]:
            raise ValueError(f"{request.key}: garment_map/mask shapes must match the image size {request.image.size}")
        # The seed only nudges lightness, so the output stays a pure function of the request.
        shift = float(np.random.default_rng(request.seed).uniform(-self.jitter, self.jitter)) if self.jitter else 0.0
        out = src.copy()
        for part, classes in zip(request.target_text.split("|"), PART_CLASSES, strict=False):
            name = find_colour(part)
            if name is None:
                continue  # no colour word: leave this garment as it is
            region = np.isin(garments, classes) & mask
            if region.any():
                out[region] = recolour_pixels(src[region], _target_lab(name), self.keep_chroma, shift)
        return Image.fromarray(out)

    def generate(self, batch: list[GenerationRequest]) -> list[Image.Image]:
        return [self.recolour(r) for r in batch]
