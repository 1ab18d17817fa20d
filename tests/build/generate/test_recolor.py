"""The model-free recolourer: colours, texture, dresses and the patterns named in the target text (its speed is
measured in bench/, not here)."""

from __future__ import annotations

import numpy as np
import pytest
from generation_cases import clothes_mask, person, request
from PIL import Image

from dlcr_data.build.generate.recolor import RecolorGenerator, _target_lab, recolour_pixels, region_shading, second_tone
from dlcr_data.vocab.colors import colour_rgb, find_pattern, name_colour, rgb_to_lab
from dlcr_data.vocab.garments import CLASS_ID


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


def test_recolor_dress():
    image, garments = person()
    garments = np.where(garments == CLASS_ID["upper"], CLASS_ID["dress"], garments).astype(np.uint8)
    mask = clothes_mask(garments)
    gen = RecolorGenerator()
    batch = [request(image, garments, mask, target="yellow dress | | black boots", seed=s) for s in range(50)]
    outs = gen.generate(batch)
    dress = (garments == CLASS_ID["dress"]) & mask
    assert name_colour(region_mean(outs[0], dress)) == "yellow"


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
