"""A model-free generator: recolour each garment to the colour named in the target text, keeping its texture.

Cheap and deterministic (CPU, ~1 ms per 128x64 image), for pipeline tests, demos and as a colour-only
augmentation baseline. Works in CIE Lab: the region's lightness pattern (shading, stripes, folds) is kept around
the target lightness, and chroma is set to the target's.

When a part of the target text names a pattern ("plain", "striped", "checked"/"plaid", "dotted"/"polka"), the
garment's own pattern is replaced too, as diffusion would draw the described garment: the region's lightness is
split into shading (a masked, normalised blur wider than a pattern period) and texture (the rest); the texture is
dropped (all but a trace of fabric noise) and the named pattern is drawn in a second tone of the target colour, in
image coordinates scaled to the region's height, with a phase drawn from the request seed. Parts without a pattern
word keep the source texture exactly as before.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from dlcr_data.build.backends import Backend
from dlcr_data.build.generate.base import GenerationRequest
from dlcr_data.vocab.colors import colour_rgb, find_colour, find_pattern, lab_to_rgb, rgb_to_lab
from dlcr_data.vocab.garments import OUTFIT_PARTS

# Target-text part -> the garment classes it recolours ("top | bottom | shoes").
PART_CLASSES: tuple[tuple[int, ...], ...] = tuple(classes for _, classes in OUTFIT_PARTS)
_MIN_CONTRAST = 0.35  # never squeeze the lightness pattern below this fraction (near-black/white targets)
_JITTER_L = 2.0  # per-seed lightness jitter (Lab L units): variants of one colour are not pixel-identical
_KEEP_TEXTURE = 0.1  # fraction of the old texture (fabric noise, faint old pattern) kept when drawing a new pattern
# Pattern layout (as the demo paints them; about a third of the area in the second tone): periods per region-box
# height, the second tone's share of a stripe period, and the dot radius as a fraction of the dot period.
_PERIODS = {"striped": 7.0, "checked": 6.0, "dotted": 6.0}
_MIN_PERIOD = 4.0  # pixels: small regions (shoes) still get a visible pattern
_STRIPE_FILL = 0.34
_CHECK_FILL = 0.2  # per direction: two stripe sets cover 1 - 0.8**2 = 36 %
_DOT_RADIUS = 0.3  # pi * 0.3**2 = 28 %


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


def second_tone(rgb: np.ndarray) -> np.ndarray:
    """A pattern's second colour: a darker tone of light colours, a lighter tone of dark ones (as the demo paints)."""
    rgb = np.asarray(rgb, np.float64)
    lum = float(rgb @ np.array([0.299, 0.587, 0.114]))
    return rgb * 0.55 if lum > 110 else rgb + (255.0 - rgb) * 0.45


_TONES_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _tones(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Lab of a colour name and of its second tone."""
    if name not in _TONES_CACHE:
        rgb = np.array(colour_rgb(name), np.float64)
        _TONES_CACHE[name] = (rgb_to_lab(rgb), rgb_to_lab(second_tone(rgb)))
    return _TONES_CACHE[name]


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Sum over (2r+1)^2 boxes along the last two axes (zero padded), by cumulative sums."""
    c = np.cumsum(np.pad(a, ((0, 0), (r + 1, r), (0, 0))), axis=1)
    a = c[:, 2 * r + 1 :] - c[:, : -2 * r - 1]
    c = np.cumsum(np.pad(a, ((0, 0), (0, 0), (r + 1, r))), axis=2)
    return c[:, :, 2 * r + 1 :] - c[:, :, : -2 * r - 1]


def region_shading(light: np.ndarray, region: np.ndarray, radius: int) -> np.ndarray:
    """Low-frequency part of the lightness `light` (one value per True pixel of `region`, row-major).

    A masked tent blur (a box of 2*radius+1, twice) normalised by the blurred mask, blur(L*m) / blur(m): pixels
    outside the region do not leak in, and a box a bit wider than a pattern period averages the pattern away.
    """
    lm = np.zeros(region.shape, np.float64)
    lm[region] = light
    b = _box_blur(_box_blur(np.stack([lm, region.astype(np.float64)]), radius), radius)
    return b[0][region] / np.maximum(b[1][region], 1e-12)


def _coverage(d: np.ndarray) -> np.ndarray:
    """Signed distance to a shape's edge in pixels (positive inside) -> the share of the pixel it covers."""
    return np.clip(d + 0.5, 0.0, 1.0)


def _stripes(t: np.ndarray, period: float, fill: float) -> np.ndarray:
    f = t - np.floor(t)
    inside = np.minimum(f, fill - f)
    outside = -np.minimum(f - fill, 1.0 - f)
    return _coverage(np.where(f < fill, inside, outside) * period)


def pattern_weight(pattern: str, ys: np.ndarray, xs: np.ndarray, height: int, phase: np.ndarray) -> np.ndarray | None:
    """Second-tone coverage (0..1) of the pixels at rows `ys`, columns `xs`; None for "plain".

    Laid out in image coordinates with a period scaled to the region's box `height`; `phase` (2,) in periods.
    Edges are anti-aliased (coverage of each pixel), so thin stripes do not alias into moire.
    """
    if pattern not in _PERIODS:
        return None
    period = max(_MIN_PERIOD, height / _PERIODS[pattern])
    v = (ys + 0.5) / period + phase[0]
    u = (xs + 0.5) / period + phase[1]
    if pattern == "striped":  # horizontal stripes
        return _stripes(v, period, _STRIPE_FILL)
    if pattern == "checked":  # two orthogonal stripe sets
        return np.maximum(_stripes(v, period, _CHECK_FILL), _stripes(u, period, _CHECK_FILL))
    dist = np.hypot(u - np.floor(u) - 0.5, v - np.floor(v) - 0.5)  # dotted: a square grid of discs
    return _coverage((_DOT_RADIUS - dist) * period)


def repattern_pixels(
    rgb: np.ndarray,
    region: np.ndarray,
    target: np.ndarray,
    second: np.ndarray,
    weight: np.ndarray | None,
    radius: int,
    shift_l: float = 0.0,
    keep_texture: float = _KEEP_TEXTURE,
) -> np.ndarray:
    """Redraw (N, 3) RGB pixels of one garment (the True pixels of `region`, row-major) in a new pattern.

    Keeps the region's shading, drops its texture (but `keep_texture` of it), and blends the Lab colours `target`
    and `second` by `weight` (second-tone coverage per pixel; None: plain). Returns (N, 3) uint8.
    """
    lab = rgb_to_lab(rgb)
    light = lab[:, 0]
    shading = region_shading(light, region, radius)
    t1 = float(np.clip(target[0] + shift_l, 0.0, 100.0))
    t2 = float(np.clip(second[0] + shift_l, 0.0, 100.0))
    spread = 3.0 * float(shading.std()) + 1e-6
    room = min(t1, 100.0 - t1) if weight is None else min(t1, 100.0 - t1, t2, 100.0 - t2)
    k = float(np.clip(room / spread, _MIN_CONTRAST, 1.0))
    rel = k * (shading - shading.mean()) + keep_texture * (light - shading)

    def tone(t_l: float, colour: np.ndarray) -> np.ndarray:
        new_l = np.clip(t_l + rel, 0.0, 100.0)
        return np.concatenate([new_l[:, None], ((new_l + 16.0) / (t_l + 16.0))[:, None] * colour[1:]], 1)

    out = tone(t1, target)
    if weight is not None:
        out += weight[:, None] * (tone(t2, second) - out)
    return np.rint(lab_to_rgb(out)).astype(np.uint8)


class RecolorGenerator(Backend):
    """Recolours upper+dress / lower / shoes to the first colour word of each target-text part, inside the mask.

    With `patterns` on, a part that names a pattern ("plain", "striped", "checked", "dotted") also gets that
    pattern instead of the garment's own (without a colour word: in the garment's mean colour).
    """

    name = "recolor"
    model_id: str | None = None
    needs_donor = False

    def __init__(
        self, keep_chroma: float = 0.1, jitter: float = _JITTER_L, patterns: bool = True,
        keep_texture: float = _KEEP_TEXTURE,
    ):  # fmt: skip
        self.keep_chroma = keep_chroma
        self.jitter = jitter
        self.patterns = patterns
        self.keep_texture = keep_texture

    def recolour(self, request: GenerationRequest) -> Image.Image:
        src = np.asarray(request.image.convert("RGB"))
        garments = np.asarray(request.garment_map)
        mask = np.asarray(request.mask, bool)
        if garments.shape != src.shape[:2] or mask.shape != src.shape[:2]:
            raise ValueError(f"{request.key}: garment_map/mask shapes must match the image size {request.image.size}")
        # The seed only nudges lightness, so the output stays a pure function of the request.
        shift = float(np.random.default_rng(request.seed).uniform(-self.jitter, self.jitter)) if self.jitter else 0.0
        out = src.copy()
        for i, (part, classes) in enumerate(zip(request.target_text.split("|"), PART_CLASSES, strict=False)):
            name = find_colour(part)
            pattern = find_pattern(part) if self.patterns else None
            if name is None and pattern is None:
                continue  # no colour or pattern word: leave this garment as it is
            region = np.isin(garments, classes) & mask
            if not region.any():
                continue
            if pattern is None:
                out[region] = recolour_pixels(src[region], _target_lab(name), self.keep_chroma, shift)
                continue
            if name is None:  # a pattern but no colour: the garment's own (mean) colour
                mean = src[region].mean(0)
                target, second = rgb_to_lab(mean), rgb_to_lab(second_tone(mean))
            else:
                target, second = _tones(name)
            ys, xs = np.nonzero(region)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            height = int(y1 - y0)
            phase = np.random.default_rng([request.seed, i]).uniform(0.0, 1.0, 2)  # seed-derived, per part
            weight = pattern_weight(pattern, ys, xs, height, phase)
            radius = max(1, round((height / 5 - 1) / 2))  # box ~ height/5: a bit wider than a pattern period
            out[region] = repattern_pixels(
                src[region], region[y0:y1, x0:x1], target, second, weight, radius, shift, self.keep_texture
            )
        return Image.fromarray(out)

    def generate(self, batch: list[GenerationRequest]) -> list[Image.Image]:
        return [self.recolour(r) for r in batch]
