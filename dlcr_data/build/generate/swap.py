"""Appearance/structure swap: the source's structure dressed in a donor's garment colours (model-free, CPU).

A deterministic analogue of DG-Net (Zheng et al., "Joint Discriminative and Generative Learning for Person
Re-identification", CVPR 2019). DG-Net encodes *structure* from a grey-scale image (pose, body, background,
folds) and *appearance* from a colour image (clothing, pooled over 4 horizontal parts), and its decoder injects
the appearance code through AdaIN, i.e. as per-channel means and standard deviations. Here: structure = the source
image (its Lab lightness pattern, its parsing layout, everything outside the mask); appearance = the donor's
garment statistics per outfit part (top = upper + dress, bottom, shoes), or per one of 4 horizontal stripes of
the person with `stripes=True`, like DG-Net's appearance parts. Each part of the source is normalised in CIE Lab
to zero mean and unit std and rescaled to the donor part's mean and std, AdaIN-style (chroma in a
hue-aligned frame, see `adain_lab`).

Std ratios (donor / source) are clipped: lightness to `lightness_ratio` (default 0.5..1.5), so a flat donor
garment at most halves the source's folds and print instead of erasing them (the lightness pattern *is* the
structure), and a flat source's sensor noise is not blown up; chroma to `chroma_ratio` (default 0..1): DG-Net's
structure is grey-scale, so the source's colour pattern may vanish entirely, but its chroma noise is never
amplified into speckle. Donor statistics skip the donor garment's edge pixels (mixed with the background). A part
the donor does not show (fewer than `min_pixels` pixels) is left as it is. Outside the mask the output is
bit-identical to the source; mixed edge pixels inside the mask follow the garment part way (`feather`). Nothing
is random (the request seed is not used). With `stripes`, a stripe that spans two garments (the waist) pools
their statistics, as DG-Net's parts do; parsing parts are the better default.
"""

from __future__ import annotations

import itertools

import numpy as np
from PIL import Image

from dlcr_data.build.backends import Backend
from dlcr_data.build.generate.base import GenerationRequest
from dlcr_data.build.generate.clone import donor_arrays, donor_core, feather_into_mask, fringe_pixels
from dlcr_data.vocab.colors import lab_to_rgb, rgb_to_lab
from dlcr_data.vocab.garments import OUTFIT_CLASSES, OUTFIT_PARTS

STRIPES = 4  # DG-Net pools its appearance code over 4 horizontal parts
_GREY_CHROMA, _HUE_CHROMA = 3.0, 10.0  # Lab chroma: below the first a mean hue is noise, above the second it counts


def stripe_regions(garments: np.ndarray, n: int = STRIPES) -> list[np.ndarray]:
    """The outfit pixels of `garments` split into `n` equal-height stripes of the person's rows (non-background)."""
    clothes = np.isin(garments, OUTFIT_CLASSES)
    rows = np.flatnonzero((garments != 0).any(1))
    if rows.size == 0:
        return [np.zeros_like(clothes) for _ in range(n)]
    edges = np.rint(np.linspace(rows[0], rows[-1] + 1, n + 1)).astype(int)
    out = []
    for a, b in itertools.pairwise(edges):
        band = np.zeros_like(clothes)
        band[a:b] = True
        out.append(clothes & band)
    return out


def part_regions(garments: np.ndarray) -> list[np.ndarray]:
    """One bool map per outfit part (top, bottom, shoes)."""
    return [np.isin(garments, classes) for _, classes in OUTFIT_PARTS]


def _hue_weight(m_src: np.ndarray, m_donor: np.ndarray) -> float:
    """How far to trust the mean hues' directions: 0 when either mean is near grey (chroma < 3), 1 from 10 up."""
    chroma = min(float(np.hypot(*m_src)), float(np.hypot(*m_donor)))
    return float(np.clip((chroma - _GREY_CHROMA) / (_HUE_CHROMA - _GREY_CHROMA), 0.0, 1.0))


def adain_lab(
    lab: np.ndarray, donor_lab: np.ndarray, lightness_ratio: tuple[float, float], chroma_ratio: tuple[float, float],
    transfer_lightness: bool = True,
) -> np.ndarray:  # fmt: skip
    """Lab pixels (N, 3) moved to the donor pixels' (M, 3) mean and std, AdaIN-style, std ratios clipped.

    L is normalised on its own. Chroma is normalised in a hue-aligned frame: the source's chroma deviations are
    first turned by the angle from the source's mean hue to the donor's, then scaled per axis of the donor's hue
    frame (along / across its mean hue). A deviation towards grey (a desaturated fold, a pixel mixed with the
    background) thus stays a deviation towards grey, where per-channel a*, b* AdaIN would turn the edge of a blue
    garment recoloured red into an orange outline. Near-grey means have no reliable hue: no turn, as plain AdaIN.
    """
    mean, d_mean = lab.mean(0), donor_lab.mean(0)
    out = np.empty_like(lab)
    if transfer_lightness:
        ratio = np.clip(donor_lab[:, 0].std() / max(float(lab[:, 0].std()), 1e-6), *lightness_ratio)
        out[:, 0] = d_mean[0] + (lab[:, 0] - mean[0]) * ratio
    else:
        out[:, 0] = lab[:, 0]
    hue_src, hue_donor = np.arctan2(mean[2], mean[1]), np.arctan2(d_mean[2], d_mean[1])
    turn = _hue_weight(mean[1:], d_mean[1:]) * np.angle(np.exp(1j * (hue_donor - hue_src)))  # wrapped to (-pi, pi]
    c, s = np.cos(turn), np.sin(turn)
    dev = (lab[:, 1:] - mean[1:]) @ np.array([[c, s], [-s, c]])  # rows (a, b) turned by `turn`
    frame = np.array([[np.cos(hue_donor), np.sin(hue_donor)], [-np.sin(hue_donor), np.cos(hue_donor)]])
    src_axes = dev @ frame.T  # coordinates along / across the donor's hue
    donor_axes = (donor_lab[:, 1:] - d_mean[1:]) @ frame.T
    ratio_ab = np.clip(donor_axes.std(0) / np.maximum(src_axes.std(0), 1e-6), *chroma_ratio)
    out[:, 1:] = d_mean[1:] + (src_axes * ratio_ab) @ frame
    return out


class SwapGenerator(Backend):
    """The source's structure in the donor's appearance: per part, AdaIN in CIE Lab from the donor's garments.

    Options: `transfer_lightness` (also move L to the donor's, not only a*, b*); `lightness_ratio` and
    `chroma_ratio`, the (min, max) std ratios donor / source allowed for L and for a*, b*; `stripes` (4 horizontal
    stripes of the person instead of parsing parts); `feather` (pixels, 0 = off: recolour non-garment mask pixels
    next to changed ones part way); `min_pixels` (the smallest donor region used).
    """

    name = "swap"
    model_id: str | None = None
    needs_donor = True

    def __init__(
        self, *, transfer_lightness: bool = True, lightness_ratio: tuple[float, float] = (0.5, 1.5),
        chroma_ratio: tuple[float, float] = (0.0, 1.0), stripes: bool = False, feather: int = 1, min_pixels: int = 8,
    ) -> None:  # fmt: skip
        for lo, hi in (lightness_ratio, chroma_ratio):
            if not 0.0 <= lo <= hi:
                raise ValueError(f"std ratio ranges need 0 <= min <= max, got {lightness_ratio}, {chroma_ratio}")
        self.transfer_lightness = transfer_lightness
        self.lightness_ratio = tuple(lightness_ratio)
        self.chroma_ratio = tuple(chroma_ratio)
        self.stripes = stripes
        self.feather = feather
        self.min_pixels = min_pixels

    def swap(self, request: GenerationRequest) -> Image.Image:
        src, garments, mask, donor, donor_map = donor_arrays(request)
        regions = stripe_regions if self.stripes else part_regions
        out = src.copy()
        changed = np.zeros(mask.shape, bool)
        for part, donor_part in zip(regions(garments), regions(donor_map), strict=True):
            write = part & mask
            if not write.any() or np.count_nonzero(donor_part) < max(1, self.min_pixels):
                continue  # nothing to change, or the donor does not show this part: keep the source's
            donor_lab = rgb_to_lab(donor[donor_core(donor_part, self.min_pixels)])  # without mixed edge pixels
            lab = adain_lab(
                rgb_to_lab(src[write]), donor_lab, self.lightness_ratio, self.chroma_ratio, self.transfer_lightness
            )
            out[write] = np.rint(lab_to_rgb(lab)).astype(np.uint8)
            changed |= write
        feather_into_mask(src, out, changed, fringe_pixels(garments, mask), self.feather)
        return Image.fromarray(out)

    def generate(self, batch: list[GenerationRequest]) -> list[Image.Image]:
        return [self.swap(r) for r in batch]
