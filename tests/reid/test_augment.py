"""CAL's training augmentation, batched and seeded (`reid/augment.py`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dlcr_data.reid.augment import CAL, AugmentConfig, _draw, augment, draw_seed, normalize

H, W = 32, 16


def images(b: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, H, W), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_flip_only_is_a_mirror_of_the_normalised_image():
    x = images()
    out = augment(x, [1, 2, 3, 4], AugmentConfig(crop_p=0, flip_p=1, erase_p=0))
    assert torch.allclose(out, normalize(x).flip(-1))


def test_erasing_fills_one_rectangle_with_cals_constants():
    x = images(64)
    out = augment(x, range(64), AugmentConfig(crop_p=0, flip_p=0, erase_p=1))
    fill = torch.tensor((0.4914, 0.4822, 0.4465)).view(3, 1, 1)
    for i in range(64):
        changed = (out[i] != normalize(x[i])).any(0)
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        eh, ew = len(rows), len(cols)
        assert eh and ew and changed.sum() <= eh * ew  # one rectangle (a filled pixel may equal the image's)
        top, left = int(rows[0]), int(cols[0])
        assert torch.allclose(out[i][:, top : top + eh, left : left + ew], fill.expand(3, eh, ew))
        # area 2-40 % of the image and aspect in [0.3, 3.33], up to the rounding of each side (+-0.5 pixel)
        assert (math.sqrt(0.02 * H * W) - 1) ** 2 <= eh * ew <= (math.sqrt(0.4 * H * W) + 1) ** 2
        assert (eh - 0.5) / (ew + 0.5) <= 1 / 0.3 and (eh + 0.5) / (ew - 0.5) >= 0.3
        assert eh < H and ew < W


def test_crop_is_a_window_of_the_image_enlarged_by_one_eighth():
    x = images(2)
    out = augment(x, [5, 6], AugmentConfig(crop_p=1, flip_p=0, erase_p=0))
    big = F.interpolate(normalize(x), size=(36, 18), mode="bilinear")  # round(32 * 1.125), round(16 * 1.125)
    for i in range(2):
        windows = [
            (top, left)
            for top in range(5)
            for left in range(3)
            if torch.allclose(out[i], big[i, :, top : top + H, left : left + W], atol=1e-5)
        ]
        assert len(windows) == 1


def test_each_step_happens_half_the_time_as_cal():
    n = 4000
    draws = [_draw(H, W, torch.Generator().manual_seed(s), CAL) for s in range(n)]
    for share in (
        sum(d.crop is not None for d in draws),
        sum(d.flip for d in draws),
        sum(d.erase is not None for d in draws),
    ):
        assert abs(share / n - 0.5) < 0.03  # 4000 draws: std 0.8 %


def test_seeded_per_image_and_shared_by_a_clips_frames():
    x = images()
    assert torch.equal(augment(x, [1, 2, 3, 4]), augment(x, [1, 2, 3, 4]))
    assert torch.equal(augment(x, [1, 2, 3, 4])[2], augment(x[2:3], [3])[0])  # an image's result is its own
    assert not torch.equal(augment(x, [1, 2, 3, 4]), augment(x, [5, 6, 7, 8]))
    clip = x[:1].expand(3, -1, -1, -1)[None]  # one clip of 3 identical frames
    out = augment(clip, [9], AugmentConfig(crop_p=1, flip_p=1, erase_p=1))
    assert torch.equal(out[0, 0], out[0, 1]) and torch.equal(out[0, 0], out[0, 2])
    assert draw_seed(1, 0, 7) == draw_seed(1, 0, 7) != draw_seed(1, 1, 7)
