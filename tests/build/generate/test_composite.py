"""Compositing a generated image back into its source, and the model-size round trip."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dlcr_data.build.generate import composite
from dlcr_data.build.generate.composite import from_model_size, to_model_size


@pytest.mark.parametrize("seed", range(6))
def test_composite_keeps_outside_pixels(seed):
    rng = np.random.default_rng(seed)
    w, h = (int(v) for v in rng.integers(5, 60, 2) | 1)  # odd sizes
    src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    gw, gh = (int(v) for v in rng.integers(8, 80, 2))  # generated at another size: resized back
    gen = Image.fromarray(rng.integers(0, 256, (gh, gw, 3), dtype=np.uint8))
    mask = rng.random((h, w)) < rng.uniform(0.1, 0.9)
    for feather in (0, 2):
        out = np.asarray(composite(Image.fromarray(src), gen, mask, feather=feather))
        assert out.shape == src.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out[~mask], src[~mask])
        if feather == 0:
            np.testing.assert_array_equal(out[mask], np.asarray(gen.resize((w, h), Image.Resampling.LANCZOS))[mask])


@pytest.mark.parametrize("pad", [False, True])
def test_model_size_round_trip(pad):
    rng = np.random.default_rng(1)
    src = Image.fromarray(rng.integers(0, 256, (83, 37, 3), dtype=np.uint8))
    mask = np.zeros((83, 37), bool)
    mask[30:60, 10:30] = True
    img, m, placement = to_model_size(src, mask, (32, 64), pad=pad)
    assert img.size == m.size == (32, 64) and m.mode == "L"
    left, top, right, bottom = placement.box
    marr = np.asarray(m)
    assert set(np.unique(marr)) <= {0, 255} and marr.any()
    if pad:  # aspect kept: 37x83 in 32x64 -> 29x64, letterboxed left and right; padding never repainted
        assert (right - left, bottom - top) == (29, 64)
        assert not marr[:, :left].any() and not marr[:, right:].any()
    else:
        assert placement.box == (0, 0, 32, 64)
    back = from_model_size(img, placement, src.size)
    assert back.size == src.size
