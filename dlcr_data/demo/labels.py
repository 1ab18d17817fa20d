"""Parsing labels of the demo masks, and a palette to show a mask as a colour image."""

from __future__ import annotations

import numpy as np
from PIL import Image

BACKGROUND, HAIR, FACE, UPPER, LOWER, SHOES, ARMS, LEGS = range(8)

# Index = label value in the 8-bit masks; arms/legs mean *skin*, a covered limb takes its garment's label.
LABELS: tuple[str, ...] = ("background", "hair", "face", "upper_clothes", "lower_clothes", "shoes", "arms", "legs")

LABEL_COLOURS = np.array(
    [
        (0, 0, 0),
        (128, 0, 0),
        (255, 200, 150),
        (230, 60, 60),
        (60, 90, 230),
        (250, 210, 30),
        (60, 200, 200),
        (200, 80, 220),
    ],
    dtype=np.uint8,
)


def colourise(mask: np.ndarray | Image.Image) -> Image.Image:
    """An RGB picture of a label map (unknown labels show as white)."""
    labels = np.asarray(mask)
    lut = np.full((256, 3), 255, np.uint8)
    lut[: len(LABEL_COLOURS)] = LABEL_COLOURS
    return Image.fromarray(lut[labels])
