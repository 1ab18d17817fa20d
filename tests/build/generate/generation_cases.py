"""Requests the generator tests share: a synthetic person (recolor, diffusion) and demo people with donors (clone,
swap). The `people` fixture itself is in this folder's conftest.py."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dlcr_data.build.generate import GenerationRequest
from dlcr_data.build.parse import clothing_mask
from dlcr_data.vocab.colors import rgb_to_lab
from dlcr_data.vocab.garments import CLASS_ID, OUTFIT_PARTS


# -- a synthetic person ------------------------------------------------------------------------------------------
def person(w: int = 64, h: int = 128, seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    """A person-like figure: red striped top, grey trousers with shading, brown shoes, face and background."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), (90, 140, 90), np.float64)  # green-ish background
    garments = np.zeros((h, w), np.uint8)
    x0, x1 = w // 4, 3 * w // 4
    rows = {"face": (0.05, 0.2), "upper": (0.2, 0.55), "lower": (0.55, 0.9), "shoes": (0.9, 0.98)}
    for cls, (a, b) in rows.items():
        garments[int(a * h) : int(b * h), x0:x1] = CLASS_ID[cls]
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = np.where((yy // 4) % 2 == 0, 1.0, 0.55)[..., None]  # light/dark horizontal stripes
    shading = (0.7 + 0.3 * np.sin(np.pi * (xx - x0) / max(1, x1 - x0)))[..., None]  # darker at the sides
    colours = {"face": (220, 180, 150), "upper": (210, 50, 50), "lower": (120, 120, 125), "shoes": (110, 70, 40)}
    textures = {"upper": stripes, "lower": shading}
    for cls, rgb in colours.items():
        region = garments == CLASS_ID[cls]
        img[region] = (np.array(rgb, np.float64) * textures.get(cls, np.ones((h, w, 1))))[region]
    img += rng.normal(0, 3, img.shape)
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)), garments


def request(image, garments, mask, target="blue long-sleeve shirt | black trousers | white shoes", seed=0, prompt=""):
    return GenerationRequest(
        key="k", image=image, garment_map=garments, mask=mask, prompt=prompt or target.replace("|", ","),
        negative_prompt="", target_text=target, seed=seed,
    )  # fmt: skip


def clothes_mask(garments: np.ndarray) -> np.ndarray:
    """Every garment, minus a 3-px column strip: garment pixels outside the mask must stay as they were."""
    mask = np.isin(garments, [CLASS_ID[c] for c in ("upper", "lower", "dress", "shoes")])
    mask[:, :3] = False
    mask[:, 20:23] = False
    return mask


# -- demo people, source and donor -------------------------------------------------------------------------------
def masked(garments: np.ndarray) -> np.ndarray:
    """The build's dilated clothing mask, minus two column strips: garment pixels outside it must not change."""
    mask = clothing_mask(garments, dilation=2)
    mask[:, 20:23] = False
    mask[:, 40:42] = False
    return mask


def make_request(
    src: tuple, donor: tuple | None, mask: np.ndarray | None = None, seed: int = 0, donor_map: np.ndarray | None = None
) -> GenerationRequest:
    text, rgb, garments = src
    return GenerationRequest(
        key="k", image=Image.fromarray(rgb), garment_map=garments,
        mask=masked(garments) if mask is None else mask, prompt="", negative_prompt="", target_text=text, seed=seed,
        donor_image=None if donor is None else Image.fromarray(donor[1]),
        donor_garment_map=None if donor is None else (donor[2] if donor_map is None else donor_map),
    )  # fmt: skip


def pairs(people, n: int = 6) -> list[tuple[tuple, tuple]]:
    """Source/donor pairs of different identities wearing different outfits."""
    out = [(people[i], people[(i + 1) % len(people)]) for i in range(len(people))]
    return [(s, d) for s, d in out if s[0] != d[0]][:n]


def lab_of(rgb: np.ndarray, region: np.ndarray) -> np.ndarray:
    return rgb_to_lab(np.asarray(rgb)[region])


def part(garments: np.ndarray, name: str) -> np.ndarray:
    return np.isin(garments, dict(OUTFIT_PARTS)[name])
