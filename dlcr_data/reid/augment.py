"""CAL's training augmentation (Simple-CCReID `data/__init__.py::build_img_transforms`, `data/img_transforms.py`),
batched on the training device and seeded.

Per image, in CAL's order (the resize to the training size happened at decode, `data.to_uint8`):

1. `RandomCroping`: with p = 0.5, enlarge by 1.125 (bilinear; each side rounded) and crop a random window of the
   training size back out (offsets uniform, rounded).
2. Horizontal flip with p = 0.5.
3. Normalise with ImageNet's mean and std.
4. `RandomErasing` with p = 0.5: up to 100 tries of a rectangle of area uniform in [2 %, 40 %] of the image and
   aspect ratio uniform in [0.3, 1/0.3]; its sides are rounded and must be shorter than the image's; its corner
   is uniform; its pixels are set to (0.4914, 0.4822, 0.4465) per channel (CAL's constant, in normalised units).

Each image's random numbers come from its own CPU `torch.Generator`, seeded from the run's seed, the epoch and the
image's draw key (`sampler.py`), so an image is augmented identically on any device, with any number of DataLoader
workers and any number of training processes. A video clip (B, T, 3, H, W) draws one set of
parameters per clip, applied to all its frames (CAL's spatial transforms `randomize_parameters` once per clip).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentConfig:
    """CAL's values (`configs/default_img.py`: AUG.RC_PROB, AUG.RE_PROB; `data/img_transforms.py` defaults)."""

    crop_p: float = 0.5  # RandomCroping(p=AUG.RC_PROB)
    crop_scale: float = 1.125
    flip_p: float = 0.5  # T.RandomHorizontalFlip()
    erase_p: float = 0.5  # RandomErasing(probability=AUG.RE_PROB)
    erase_area: tuple[float, float] = (0.02, 0.4)  # sl, sh
    erase_aspect: float = 0.3  # r1: aspect uniform in [r1, 1/r1]
    erase_fill: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
    erase_tries: int = 100


CAL = AugmentConfig()
# CAL's video transforms (data/__init__.py::build_vid_transforms): no random crop; AUG.RE_PROB 0 in default_vid.py
CAL_VIDEO = AugmentConfig(crop_p=0.0, erase_p=0.0)
NONE = AugmentConfig(crop_p=0.0, flip_p=0.0, erase_p=0.0)
AUGMENTATIONS = {"cal": CAL, "cal-video": CAL_VIDEO, "none": NONE}


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) → float, ImageNet mean/std."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(3, 1, 1)
    return (images.float() / 255.0 - mean) / std


@dataclass(frozen=True)
class _Draws:
    """One image's (or clip's) random parameters."""

    crop: tuple[int, int] | None  # (top, left) in the enlarged image
    flip: bool
    erase: tuple[int, int, int, int] | None  # (top, left, height, width)


def _draw(h: int, w: int, generator: torch.Generator, cfg: AugmentConfig) -> _Draws:
    def uniform() -> float:
        return float(torch.rand((), generator=generator, dtype=torch.float64))

    crop = None
    if uniform() < cfg.crop_p:
        big_h, big_w = round(h * cfg.crop_scale), round(w * cfg.crop_scale)
        crop = (round(uniform() * (big_h - h)), round(uniform() * (big_w - w)))
    flip = uniform() < cfg.flip_p
    erase = None
    if uniform() < cfg.erase_p:
        for _ in range(cfg.erase_tries):
            area = h * w * (cfg.erase_area[0] + uniform() * (cfg.erase_area[1] - cfg.erase_area[0]))
            aspect = cfg.erase_aspect + uniform() * (1 / cfg.erase_aspect - cfg.erase_aspect)
            eh, ew = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if ew < w and eh < h:
                top = int(torch.randint(0, h - eh + 1, (), generator=generator))
                left = int(torch.randint(0, w - ew + 1, (), generator=generator))
                erase = (top, left, eh, ew)
                break
    return _Draws(crop, flip, erase)


def draw_seed(seed: int, epoch: int, key: int) -> int:
    """The augmentation seed of the image drawn with `key` at `epoch`."""
    return int(np.random.SeedSequence([seed, epoch, key, 2]).generate_state(1)[0])


def augment(images: torch.Tensor, seeds: Sequence[int], cfg: AugmentConfig = CAL) -> torch.Tensor:
    """uint8 (B, 3, H, W) images or (B, T, 3, H, W) clips, one `draw_seed` each → augmented, normalised float of
    the same shape."""
    clips = images.ndim == 5
    x = normalize(images if clips else images[:, None])  # (B, T, 3, H, W)
    h, w = x.shape[-2:]
    draws = [_draw(h, w, torch.Generator().manual_seed(seed), cfg) for seed in seeds]
    cropped = [i for i, d in enumerate(draws) if d.crop is not None]
    if cropped:  # one resize for every cropped image (bilinear is linear: the same before or after normalising)
        size = (round(h * cfg.crop_scale), round(w * cfg.crop_scale))
        big = F.interpolate(x[cropped].flatten(0, 1), size=size, mode="bilinear").view(
            len(cropped), *x.shape[1:3], *size
        )
        for j, i in enumerate(cropped):
            top, left = draws[i].crop
            x[i] = big[j, :, :, top : top + h, left : left + w]
    flipped = [i for i, d in enumerate(draws) if d.flip]
    if flipped:
        x[flipped] = x[flipped].flip(-1)
    fill = torch.tensor(cfg.erase_fill, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    for i, d in enumerate(draws):
        if d.erase is not None:
            top, left, eh, ew = d.erase
            x[i, :, :, top : top + eh, left : left + ew] = fill
    return x if clips else x[:, 0]
