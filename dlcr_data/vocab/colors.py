"""A colour vocabulary: naming garment colours from pixels, and finding colour words in outfit texts.

Used by the `color` describer (pixels -> names) and the `recolor` generator (names -> target colours). Names are
matched in CIE Lab, where distances follow perceived colour differences better than in RGB.
"""

from __future__ import annotations

import re

import numpy as np

# Common garment colour words; the first twelve are the demo's palette, so names round-trip on the demo.
VOCABULARY: dict[str, tuple[int, int, int]] = {
    "black": (32, 32, 34),
    "white": (236, 236, 232),
    "grey": (130, 130, 134),
    "red": (200, 34, 40),
    "blue": (40, 82, 200),
    "green": (40, 150, 64),
    "yellow": (236, 206, 48),
    "orange": (240, 128, 32),
    "pink": (240, 150, 196),
    "purple": (120, 52, 156),
    "brown": (122, 76, 40),
    "beige": (214, 194, 150),
    "navy": (28, 36, 90),
    "maroon": (110, 22, 36),
    "olive": (110, 110, 40),
    "teal": (30, 120, 120),
    "khaki": (180, 165, 110),
    "light blue": (140, 180, 230),
    "dark green": (24, 80, 40),
}
ALIASES = {"gray": "grey", "tan": "khaki", "cream": "beige", "violet": "purple", "dark blue": "navy"}
_WORDS = sorted([*VOCABULARY, *ALIASES], key=len, reverse=True)  # longest first: "light blue" before "blue"
_WORD_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in _WORDS) + r")\b")


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8/float (…, 3) in 0..255 -> CIE Lab (D65)."""
    c = np.asarray(rgb, np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


_XYZ_FROM_RGB = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)  # the exact inverse, so Lab -> RGB round-trips with rgb_to_lab


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) (…, 3) -> sRGB float in 0..255 (clipped to the gamut); the inverse of `rgb_to_lab`."""
    lab = np.asarray(lab, np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    xyz = np.where(f > 6 / 29, f**3, (116 * f - 16) * 27 / 24389) * np.array([0.95047, 1.0, 1.08883])
    c = np.clip(xyz @ _RGB_FROM_XYZ.T, 0.0, 1.0)
    c = np.where(c > 0.0031308, 1.055 * c ** (1 / 2.4) - 0.055, 12.92 * c)
    return c * 255.0


_NAMES = list(VOCABULARY)
_LAB = rgb_to_lab(np.array(list(VOCABULARY.values())))


def name_colour(rgb: tuple[float, float, float] | np.ndarray) -> str:
    """The vocabulary name nearest to an RGB colour."""
    d = np.linalg.norm(_LAB - rgb_to_lab(np.asarray(rgb, np.float64)), axis=-1)
    return _NAMES[int(np.argmin(d))]


def find_colour(text: str) -> str | None:
    """The first colour word in `text` (aliases resolved), e.g. "Navy blue jeans" -> "navy"; None if none."""
    m = _WORD_RE.search(text.lower())
    if not m:
        return None
    return ALIASES.get(m.group(1), m.group(1))


def colour_rgb(name: str) -> tuple[int, int, int]:
    return VOCABULARY[ALIASES.get(name, name)]


# Garment pattern words -> the demo's pattern names ("plain", "striped", "checked", "dotted").
PATTERN_WORDS: dict[str, str] = {
    "plain": "plain",
    "solid": "plain",
    "striped": "striped",
    "stripes": "striped",
    "stripy": "striped",
    "checked": "checked",
    "checkered": "checked",
    "chequered": "checked",
    "plaid": "checked",
    "tartan": "checked",
    "gingham": "checked",
    "dotted": "dotted",
    "polka": "dotted",
    "spotted": "dotted",
}
_PATTERN_RE = re.compile(r"\b(" + "|".join(sorted(PATTERN_WORDS, key=len, reverse=True)) + r")\b")


def find_pattern(text: str) -> str | None:
    """The first pattern word in `text` as "plain" / "striped" / "checked" / "dotted", e.g. "red plaid shirt" ->
    "checked"; None if the text names no pattern."""
    m = _PATTERN_RE.search(text.lower())
    return PATTERN_WORDS[m.group(1)] if m else None
