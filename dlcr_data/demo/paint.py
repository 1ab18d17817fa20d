"""Colouring a supersampled label map into a camera image: garments, skin, shading, background and light."""

from __future__ import annotations

import numpy as np

from dlcr_data.demo.identity import PALETTE, Outfit, Traits
from dlcr_data.demo.labels import ARMS, FACE, HAIR, LEGS, LOWER, SHOES, UPPER
from dlcr_data.demo.plan import Camera


def _frac(a: np.ndarray) -> np.ndarray:
    return a - np.floor(a)


def background(cam: Camera, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A plain scene per camera (wall + floor), varied a little per image; float32 (h, w, 3)."""
    y = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    x = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / w
    horizon = {"hall": 0.62, "corridor": 0.66, "street": 0.7, "park": 0.6}[cam.background]
    horizon += rng.uniform(-0.04, 0.04)
    off, off2 = rng.uniform(0, 1, 2)
    floor_y = np.clip(y - horizon, 1e-3, None)
    lines = _frac(0.25 / floor_y + off) < 0.12  # floor joints that bunch up towards the horizon
    wall = np.ones((h, w, 1), np.float32)
    if cam.background == "hall":
        top, bottom = np.array((176, 172, 162)), np.array((140, 134, 126))
        wall = wall * (0.9 + 0.12 * y)[..., None]
    elif cam.background == "corridor":
        top, bottom = np.array((118, 124, 136)), np.array((88, 90, 96))
        panel = (_frac(x * 3 + off) < 0.06) | ((np.abs(x - off2) < 0.14) & (y > 0.12))
        wall = wall * np.where(panel, 0.78, 1.0)[..., None]
    elif cam.background == "street":
        top, bottom = np.array((184, 172, 152)), np.array((152, 152, 150))
        window = (np.abs(_frac(x * 3 + off) - 0.5) < 0.22) & (np.abs(_frac(y * 5 + off2) - 0.5) < 0.26)
        wall = wall * np.where(window & (y < horizon - 0.05), 0.55, 1.0)[..., None]
    else:  # park: blotchy foliage
        top, bottom = np.array((86, 118, 78)), np.array((176, 158, 126))
        p = rng.uniform(0, 6.3, 4)
        blot = 0.85 + 0.12 * np.sin(x * 17 + p[0]) * np.sin(y * 13 + p[1]) + 0.08 * np.sin(x * 29 + y * 23 + p[2])
        wall = wall * blot[..., None]
    is_floor = (y > horizon)[..., None]
    img = np.where(is_floor, bottom * np.where(lines, 0.9, 1.0)[..., None], top * wall)
    return img.astype(np.float32)


def _second_tone(rgb: np.ndarray) -> np.ndarray:
    """Pattern colour: a darker tone of light garments, a lighter tone of dark ones."""
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    return rgb * 0.55 if lum > 110 else rgb + (255 - rgb) * 0.45


def denim_grain(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """The multiplicative noise of jeans, (h, w) float32 around 1."""
    return 1 + 0.08 * rng.standard_normal((h, w), dtype=np.float32)


def _pattern(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the second tone goes, in body units (fractions of the figure height); about a third of the area."""
    if kind == "striped":
        return np.broadcast_to(_frac(v / 0.05) < 0.34, np.broadcast_shapes(u.shape, v.shape))
    if kind == "checked":
        return (_frac(u / 0.07) < 0.2) | (_frac(v / 0.07) < 0.2)
    return (_frac(u / 0.06) - 0.5) ** 2 + (_frac(v / 0.06) - 0.5) ** 2 < 0.3**2  # dotted


def paint(
    labels: np.ndarray,
    shade: np.ndarray,
    t: Traits,
    o: Outfit,
    body: tuple[float, float, float],
    cam: Camera,
    rng: np.random.Generator,
    supersample: int,
    grain: np.ndarray | None = None,
) -> np.ndarray:
    """RGB float32 image, `supersample` times smaller than the label map (box filter).

    `body` is (centre x, shoulder y, figure height) in label-map pixels. The background is drawn at the output
    size and blended by the person's coverage of each output pixel: the same box filter, 4x less work. `grain`
    (`denim_grain`, label-map size) textures the lower garment: jeans get one, other bottoms None.
    """
    h, w = labels.shape
    cx, y_sh, hp = body
    base = np.zeros((256, 3), np.float32)
    base[HAIR] = t.hair_colour
    base[[FACE, ARMS, LEGS]] = t.skin
    base[UPPER] = PALETTE[o.top_colour]
    base[LOWER] = PALETTE[o.bottom_colour]
    base[SHOES] = PALETTE[o.shoes]
    col = base[labels]

    u = (np.arange(w, dtype=np.float32)[None, :] - cx) / hp
    v = (np.arange(h, dtype=np.float32)[:, None] - y_sh) / hp
    if o.pattern != "plain":
        spots = (labels == UPPER) & _pattern(o.pattern, u, v)
        col[spots] = _second_tone(base[UPPER])
    if grain is not None:
        col *= np.where(labels == LOWER, grain, 1)[..., None]

    # Round body (darker towards the flanks), light from above, plus the drawn shade marks.
    light = (1 - 0.28 * np.clip((u / 0.2) ** 2, 0, 1)) * (1.05 - 0.14 * np.clip(v + 0.15, 0, 1))
    person = labels > 0
    col *= (light * (shade.astype(np.float32) / 255) * person)[..., None]
    col, cover = _box(col, supersample), _box(person.astype(np.float32), supersample)
    return col + (1 - cover)[..., None] * background(cam, h // supersample, w // supersample, rng)


def _box(a: np.ndarray, s: int) -> np.ndarray:
    """Mean over s x s blocks (sum of strided views: faster than a reshaped mean)."""
    return sum(a[i::s, j::s] for i in range(s) for j in range(s)) / (s * s)


def expose(img: np.ndarray, cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """The camera's light (brightness, tint, a slight side gradient) and sensor noise; uint8 out."""
    w = img.shape[1]
    gain = cam.brightness * rng.uniform(0.95, 1.05) * np.asarray(cam.tint, np.float32)
    side = 1 + rng.uniform(-0.08, 0.08) * (np.arange(w, dtype=np.float32) / w - 0.5)
    out = img * gain * side[None, :, None] + 3.0 * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
