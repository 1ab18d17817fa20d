"""SD inpainting through a tiny random-weight pipeline, saved and loaded like real weights."""

from __future__ import annotations

import numpy as np
import pytest
from generation_cases import clothes_mask, person, request

from dlcr_data.build.generate import GenerationRequest, Generator
from dlcr_data.build.generate.diffusion import DiffusionGenerator
from dlcr_data.errors import UserError
from dlcr_data.pretrained import ModelNotFound

# `tiny_sd` is built once per session (conftest.py, tiny_models.py) and shared with the end-to-end build test.


@pytest.fixture(scope="module")
def diffusion(tiny_sd):
    return DiffusionGenerator(model=str(tiny_sd), resolution=(32, 64), steps=2)


def sd_request(seed: int, w: int = 37, h: int = 83, prompt: str = "a red shirt") -> GenerationRequest:
    image, garments = person(w, h, seed=seed % 3)
    return request(image, garments, clothes_mask(garments), seed=seed, prompt=prompt)


def test_diffusion_composites_at_source_size(diffusion):
    assert diffusion.name == "diffusion" and isinstance(diffusion, Generator)
    reqs = [sd_request(1), sd_request(2, w=41, h=95)]
    outs = diffusion.generate(reqs)
    assert len(outs) == 2
    for r, out in zip(reqs, outs, strict=True):
        src, res = np.asarray(r.image), np.asarray(out)
        assert out.size == r.image.size and out.mode == "RGB"
        np.testing.assert_array_equal(res[~r.mask], src[~r.mask])
        assert np.abs(res[r.mask].astype(int) - src[r.mask]).mean() > 1  # something was repainted


def test_diffusion_per_sample_seeds(diffusion):
    a, b = sd_request(5), sd_request(6, prompt="blue jeans")
    batch = [np.asarray(o, int) for o in diffusion.generate([a, b])]
    alone = [np.asarray(diffusion.generate([r])[0], int) for r in (a, b)]
    for x, y in zip(batch, alone, strict=True):
        assert np.abs(x - y).max() <= 2  # a sample does not depend on its batch neighbours
    again = np.asarray(diffusion.generate([a])[0], int)
    np.testing.assert_array_equal(again, alone[0])
    other = np.asarray(diffusion.generate([sd_request(5 + 3)])[0], int)  # same image and prompt, other seed
    assert np.abs(other - alone[0]).max() > 2


def test_diffusion_pad(tiny_sd):
    gen = DiffusionGenerator(model=str(tiny_sd), resolution=(32, 64), steps=2, pad=True, mask_blur=1)
    r = sd_request(4, w=61, h=71)  # nearly square: wide letterbox
    out = gen.generate([r])[0]
    src, res = np.asarray(r.image), np.asarray(out)
    assert out.size == r.image.size
    np.testing.assert_array_equal(res[~r.mask], src[~r.mask])
    assert np.abs(res[r.mask].astype(int) - src[r.mask]).mean() > 1


@pytest.mark.parametrize("resolution", [(30, 64), (32, 0)])
def test_diffusion_bad_resolution(tiny_sd, resolution):
    with pytest.raises(UserError, match="multiples of 8"):
        DiffusionGenerator(model=str(tiny_sd), resolution=resolution)


@pytest.mark.parametrize("ref", ["no-such-org/no-such-inpainting-model", "not a valid id"])
def test_diffusion_bad_model(ref):
    with pytest.raises(ModelNotFound) as err:
        DiffusionGenerator(model=ref, steps=2)
    message = str(err.value)
    assert "--model" in message and ref in message and "\n" not in message
