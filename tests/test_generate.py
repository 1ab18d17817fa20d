"""Generators: compositing, the model-free recolourer and SD inpainting through a tiny random-weight pipeline."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from dlcr_data.build.backends import lookup
from dlcr_data.build.generate import GENERATORS, GenerationRequest, Generator, composite
from dlcr_data.build.generate.composite import from_model_size, to_model_size
from dlcr_data.build.generate.diffusion import DiffusionGenerator
from dlcr_data.build.generate.recolor import RecolorGenerator, _target_lab, recolour_pixels, region_shading, second_tone
from dlcr_data.errors import UserError
from dlcr_data.pretrained import ModelNotFound
from dlcr_data.vocab.colors import colour_rgb, find_pattern, name_colour, rgb_to_lab
from dlcr_data.vocab.garments import CLASS_ID


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


# --- registry ---------------------------------------------------------------------------------------------------


def test_registry():
    assert set(GENERATORS) >= {"diffusion", "recolor"}
    gen = lookup(GENERATORS, "recolor", "generator")()
    assert isinstance(gen, Generator) and gen.name == "recolor" and gen.model_id is None
    with pytest.raises(UserError, match="choose one of: diffusion, recolor"):
        lookup(GENERATORS, "dalle", "generator")


# --- composite --------------------------------------------------------------------------------------------------


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


# --- recolor ----------------------------------------------------------------------------------------------------


def region_mean(img: Image.Image, region: np.ndarray) -> np.ndarray:
    return np.asarray(img, np.float64)[region].mean(0)


def test_recolor_colours_and_texture():
    image, garments = person()
    mask = clothes_mask(garments)
    out = RecolorGenerator().generate([request(image, garments, mask)])[0]
    src, res = np.asarray(image), np.asarray(out)
    assert out.size == image.size and out.mode == "RGB"
    np.testing.assert_array_equal(res[~mask], src[~mask])
    upper = (garments == CLASS_ID["upper"]) & mask
    lower = (garments == CLASS_ID["lower"]) & mask
    shoes = (garments == CLASS_ID["shoes"]) & mask
    assert name_colour(region_mean(image, upper)) == "red"
    assert name_colour(region_mean(out, upper)) == "blue"
    assert name_colour(region_mean(out, lower)) == "black"
    assert name_colour(region_mean(out, shoes)) == "white"
    # Stripes and shading survive: the lightness pattern is kept (correlation of L before/after).
    for region in (upper, lower):
        before, after = rgb_to_lab(src[region])[:, 0], rgb_to_lab(res[region])[:, 0]
        assert np.corrcoef(before, after)[0, 1] > 0.8
    stripe_l = rgb_to_lab(res[upper])[:, 0]
    assert stripe_l.std() > 5  # visible stripes, not a flat fill


def test_recolor_deterministic_and_partial():
    image, garments = person(seed=3)
    mask = clothes_mask(garments)
    gen = RecolorGenerator()
    a = np.asarray(gen.generate([request(image, garments, mask, seed=7)])[0])
    b = np.asarray(RecolorGenerator().generate([request(image, garments, mask, seed=7)])[0])
    np.testing.assert_array_equal(a, b)
    c = np.asarray(gen.generate([request(image, garments, mask, seed=8)])[0])
    assert np.abs(a.astype(int) - c.astype(int)).max() <= 12  # the seed only jitters lightness a little
    # No colour word in the bottom part, no shoes part at all: those regions stay as they were.
    out = np.asarray(gen.generate([request(image, garments, mask, target="green shirt | denim trousers")])[0])
    src = np.asarray(image)
    keep = np.isin(garments, [CLASS_ID["lower"], CLASS_ID["shoes"]]) | ~mask
    np.testing.assert_array_equal(out[keep], src[keep])
    upper = (garments == CLASS_ID["upper"]) & mask
    assert name_colour(region_mean(Image.fromarray(out), upper)) == "green"


def test_recolor_dress_and_speed():
    image, garments = person()
    garments = np.where(garments == CLASS_ID["upper"], CLASS_ID["dress"], garments).astype(np.uint8)
    mask = clothes_mask(garments)
    gen = RecolorGenerator()
    batch = [request(image, garments, mask, target="yellow dress | | black boots", seed=s) for s in range(50)]
    gen.generate(batch[:2])  # warm-up
    start = time.perf_counter()
    outs = gen.generate(batch)
    ms = (time.perf_counter() - start) * 1000 / len(batch)
    print(f"recolor: {ms:.2f} ms/image at 128x64")
    dress = (garments == CLASS_ID["dress"]) & mask
    assert name_colour(region_mean(outs[0], dress)) == "yellow"
    assert ms < 50  # loose: ~1-2 ms expected; shared CI machines are slow


# --- recolor: patterns named in the target text ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("red striped long-sleeve shirt", "striped"), ("navy pin-stripes shirt", "striped"),
        ("green Plaid shirt", "checked"), ("checkered shirt", "checked"), ("white polka-dot dress", "dotted"),
        ("dotted shirt", "dotted"), ("blue plain t-shirt", "plain"), ("black jeans", None), ("stripe", None),
    ],
)  # fmt: skip
def test_find_pattern(text, pattern):
    assert find_pattern(text) == pattern


def lightness(img, region: np.ndarray) -> np.ndarray:
    """Lab L of the pixels of `region` (a rectangle) as a 2-D array."""
    ys, xs = np.nonzero(region)
    crop = np.asarray(img)[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return rgb_to_lab(crop)[..., 0]


def stripe_strength(light: np.ndarray) -> tuple[float, float]:
    """(horizontal, vertical) periodicity: spread of the row means and of the column means of lightness."""
    return float(light.mean(1).std()), float(light.mean(0).std())


def pattern_case(target: str, seed: int = 0, **kw):
    image, garments = person()
    mask = clothes_mask(garments)
    out = RecolorGenerator(**kw).generate([request(image, garments, mask, target=target, seed=seed)])[0]
    src, res = np.asarray(image), np.asarray(out)
    np.testing.assert_array_equal(res[~mask], src[~mask])  # outside the mask: bit-identical
    upper = (garments == CLASS_ID["upper"]) & mask
    inner = upper.copy()
    inner[:, :23] = False  # the widest mask-free rectangle of the top: columns 23..47
    return image, out, garments, mask, upper, inner


def test_recolor_plain_removes_source_stripes():
    image, out, garments, mask, upper, inner = pattern_case("blue plain shirt | black trousers")
    before, after = rgb_to_lab(np.asarray(image)[upper])[:, 0], rgb_to_lab(np.asarray(out)[upper])[:, 0]
    assert before.std() > 8 and after.std() < 0.25 * before.std()  # the red stripes are gone
    assert name_colour(region_mean(out, upper)) == "blue"
    rows, _ = stripe_strength(lightness(out, inner))
    assert rows < 0.2 * stripe_strength(lightness(image, inner))[0]
    # Without pattern words the old texture stays: the stripes survive a plain recolour.
    kept = RecolorGenerator().generate([request(image, garments, mask, target="blue shirt | black trousers")])[0]
    assert rgb_to_lab(np.asarray(kept)[upper])[:, 0].std() > 0.8 * before.std()


def test_recolor_checked():
    image, out, *_, upper, inner = pattern_case("green checked shirt | black trousers | white shoes")
    src_rows, src_cols = stripe_strength(lightness(image, inner))
    rows, cols = stripe_strength(lightness(out, inner))
    assert src_rows > 8 and src_cols < 1.5  # the source: horizontal stripes only
    assert rows > 2 and cols > 2  # checks: lightness varies down the rows and across the columns
    assert name_colour(region_mean(out, upper)) == "green"


@pytest.mark.parametrize("colour", ["yellow", "navy", "white"])
def test_recolor_dotted(colour):
    _, out, *_, upper, inner = pattern_case(f"{colour} dotted shirt | black trousers", seed=5)
    one, two = (rgb_to_lab(np.array(c, np.float64))[0] for c in (colour_rgb(colour), second_tone(colour_rgb(colour))))
    light = rgb_to_lab(np.asarray(out)[upper])[:, 0]
    share = float(np.mean(np.abs(light - two) < np.abs(light - one)))  # pixels nearer the second tone
    assert 0.1 < share < 0.5
    rows, cols = stripe_strength(lightness(out, inner))
    assert rows > 1 and cols > 1  # a grid of dots, not stripes
    assert name_colour(region_mean(out, upper)) == colour


def test_recolor_striped_replaces_the_source_period():
    image, out, *_, upper, inner = pattern_case("white striped shirt | black trousers")
    rows, cols = stripe_strength(lightness(out, inner))
    assert rows > 4 and cols < 1.5  # horizontal stripes again
    # ... at the new period (region height / 7 ~ 6.4 px), not the source's 8 px: lightness differs from the source's.
    before, after = rgb_to_lab(np.asarray(image)[upper])[:, 0], rgb_to_lab(np.asarray(out)[upper])[:, 0]
    assert abs(np.corrcoef(before, after)[0, 1]) < 0.5


def test_recolor_patterns_deterministic_and_local():
    image, garments = person(seed=2)
    mask = clothes_mask(garments)
    target = "red checked shirt | blue striped trousers | white dotted shoes"
    a = np.asarray(RecolorGenerator().generate([request(image, garments, mask, target=target, seed=4)])[0])
    b = np.asarray(RecolorGenerator().generate([request(image, garments, mask, target=target, seed=4)])[0])
    np.testing.assert_array_equal(a, b)
    c = np.asarray(RecolorGenerator().generate([request(image, garments, mask, target=target, seed=9)])[0])
    assert not np.array_equal(a, c)  # the seed moves the pattern's phase
    src = np.asarray(image)
    np.testing.assert_array_equal(a[~mask], src[~mask])
    # Only the top names a pattern and no colour: the top keeps its colour (the pattern changes), the rest stays.
    out = np.asarray(RecolorGenerator().generate([request(image, garments, mask, target="plaid shirt |")])[0])
    keep = ~((garments == CLASS_ID["upper"]) & mask)
    np.testing.assert_array_equal(out[keep], src[keep])
    upper = (garments == CLASS_ID["upper"]) & mask
    assert not np.array_equal(out[upper], src[upper])
    assert name_colour(np.median(out[upper], 0)) == name_colour(src[upper].mean(0)) == "red"  # the main tone


@pytest.mark.parametrize("seed", [0, 7])
def test_recolor_without_pattern_words_unchanged(seed):
    """No pattern word: exactly the texture-keeping recolour (recolour_pixels per region), as before patterns."""
    image, garments = person(seed=seed)
    mask = clothes_mask(garments)
    src = np.asarray(image)
    target = "blue long-sleeve shirt | black jeans | white shoes"
    out = np.asarray(RecolorGenerator().generate([request(image, garments, mask, target=target, seed=seed)])[0])
    shift = float(np.random.default_rng(seed).uniform(-2.0, 2.0))
    expected = src.copy()
    for name, classes in (("blue", ("upper", "dress")), ("black", ("lower",)), ("white", ("shoes",))):
        region = np.isin(garments, [CLASS_ID[c] for c in classes]) & mask
        expected[region] = recolour_pixels(src[region], _target_lab(name), 0.1, shift)
    np.testing.assert_array_equal(out, expected)
    # patterns=False ignores pattern words: the same as a text without them.
    off = RecolorGenerator(patterns=False).generate(
        [request(image, garments, mask, target="blue striped long-sleeve shirt | black plaid jeans | white shoes",
                 seed=seed)]
    )[0]  # fmt: skip
    np.testing.assert_array_equal(np.asarray(off), out)


def test_region_shading_is_masked():
    region = np.zeros((20, 12), bool)
    region[3:17, 2:10] = True
    region[8, 5] = False
    light = np.full(int(region.sum()), 40.0)
    np.testing.assert_allclose(region_shading(light, region, 3), 40.0)  # no leak from outside the region
    ys, _ = np.nonzero(region)
    striped = np.where((ys // 2) % 2 == 0, 60.0, 20.0)  # period 4 < box 7: averaged away (mostly)
    shading = region_shading(striped, region, 3)
    assert np.abs(shading - 40.0)[(ys > 6) & (ys < 13)].max() < 3


def test_recolor_pattern_speed():
    image, garments = person()
    mask = clothes_mask(garments)
    gen = RecolorGenerator()
    target = "green checked shirt | black striped jeans | white dotted shoes"
    batch = [request(image, garments, mask, target=target, seed=s) for s in range(50)]
    gen.generate(batch[:2])
    start = time.perf_counter()
    gen.generate(batch)
    ms = (time.perf_counter() - start) * 1000 / len(batch)
    print(f"recolor with patterns (3 regions): {ms:.2f} ms/image at 128x64")
    assert ms < 50  # loose, as above: ~1.5 ms expected


# --- diffusion (tiny random SD inpainting, saved and loaded like real weights) ------------------------------------
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
