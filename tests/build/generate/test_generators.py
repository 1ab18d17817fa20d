"""The generator registry (`GENERATORS`, `needs_donor`) and the contract every donor generator keeps."""

from __future__ import annotations

import numpy as np
import pytest
from generation_cases import make_request, pairs, part
from PIL import Image

from dlcr_data.build.backends import lookup
from dlcr_data.build.generate import GENERATORS, Generator
from dlcr_data.build.generate.clone import CloneGenerator
from dlcr_data.build.generate.swap import SwapGenerator
from dlcr_data.errors import UserError
from dlcr_data.vocab.garments import CLASS_ID, OUTFIT_PARTS

GENERATOR_CLASSES = {"clone": CloneGenerator, "swap": SwapGenerator}


def make_generator(name: str) -> Generator:
    return lookup(GENERATORS, name, "generator")()


def needs_donor(name: str) -> bool:
    """What a generator class declares, read without building it."""
    return lookup(GENERATORS, name, "generator").needs_donor


# --- registry ---------------------------------------------------------------------------------------------------


def test_registry():
    assert set(GENERATORS) >= {"diffusion", "recolor"}
    gen = lookup(GENERATORS, "recolor", "generator")()
    assert isinstance(gen, Generator) and gen.name == "recolor" and gen.model_id is None
    with pytest.raises(UserError, match="choose one of: diffusion, recolor"):
        lookup(GENERATORS, "dalle", "generator")


def test_registry_and_needs_donor(monkeypatch):
    for name, cls in GENERATOR_CLASSES.items():
        gen = make_generator(name)
        assert isinstance(gen, cls) and isinstance(gen, Generator)
        assert gen.name == name and gen.model_id is None and gen.needs_donor is True
        assert needs_donor(name) is True and needs_donor(name.upper()) is True
    assert needs_donor("recolor") is False

    from dlcr_data.build.generate import diffusion

    def no_model(*args, **kwargs):
        raise AssertionError("needs_donor must not build the diffusion generator")

    monkeypatch.setattr(diffusion.DiffusionGenerator, "__init__", no_model)
    assert needs_donor("diffusion") is False
    flags = {name: needs_donor(name) for name in GENERATORS}  # every registered generator declares it
    assert all(isinstance(v, bool) for v in flags.values())
    assert {k: flags[k] for k in ("diffusion", "recolor", "clone", "swap")} == {
        "diffusion": False, "recolor": False, "clone": True, "swap": True,
    }  # fmt: skip
    with pytest.raises(UserError, match="unknown generator"):
        needs_donor("dalle")


# --- the contract, both generators ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["clone", "swap"])
def test_outside_mask_identical_and_deterministic(people, name):
    gen = make_generator(name)
    batch = [make_request(s, d, seed=i) for i, (s, d) in enumerate(pairs(people))]
    outs = gen.generate(batch)
    assert len(outs) == len(batch)
    for req, out in zip(batch, outs, strict=True):
        src, res = np.asarray(req.image), np.asarray(out)
        assert out.mode == "RGB" and out.size == req.image.size
        np.testing.assert_array_equal(res[~req.mask], src[~req.mask])
        region = np.isin(req.garment_map, [c for _, cls in OUTFIT_PARTS for c in cls]) & req.mask
        assert np.abs(res[region].astype(int) - src[region]).mean() > 3  # the outfit did change
    again = make_generator(name).generate(batch)  # a fresh instance, same requests: same bytes
    assert [o.tobytes() for o in again] == [o.tobytes() for o in outs]


@pytest.mark.parametrize("name", ["clone", "swap"])
def test_missing_donor_raises(people, name):
    with pytest.raises(ValueError, match="donor"):
        make_generator(name).generate([make_request(people[0], None)])


@pytest.mark.parametrize("name", ["clone", "swap"])
def test_donor_without_a_part_leaves_it(people, name):
    src, donor = pairs(people)[0]
    shoes = CLASS_ID["shoes"]
    assert (src[2] == shoes).any() and (donor[2] == shoes).any()
    no_shoes = np.where(donor[2] == shoes, CLASS_ID["background"], donor[2]).astype(np.uint8)
    req = make_request(src, donor, donor_map=no_shoes)
    out = np.asarray(make_generator(name).generate([req])[0])  # feathering touches no garment pixel either
    keep = src[2] == shoes
    np.testing.assert_array_equal(out[keep], src[1][keep])
    top = part(src[2], "top") & req.mask
    assert np.abs(out[top].astype(int) - src[1][top]).mean() > 3


@pytest.mark.parametrize("name", ["clone", "swap"])
def test_donor_of_another_size(people, name):
    src, donor = pairs(people)[1]
    small = np.asarray(Image.fromarray(donor[1]).resize((48, 96)))
    small_map = np.asarray(Image.fromarray(donor[2]).resize((48, 96), Image.Resampling.NEAREST))
    req = make_request(src, (donor[0], small, small_map))
    out = np.asarray(make_generator(name).generate([req])[0])
    assert out.shape == src[1].shape
    np.testing.assert_array_equal(out[~req.mask], src[1][~req.mask])
    top = part(src[2], "top") & req.mask
    assert np.abs(out[top].astype(int) - src[1][top]).mean() > 3
