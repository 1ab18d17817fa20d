"""The donor-based model-free generators: `clone` (ClonedPerson outfit cloning) and `swap` (DG-Net-style AdaIN)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dlcr_data.build.backends import lookup
from dlcr_data.build.generate import GENERATORS, GenerationRequest, Generator
from dlcr_data.build.generate.clone import (
    CloneGenerator,
    apply_homography,
    donor_core,
    feather_into_mask,
    homography,
    min_area_rect,
)
from dlcr_data.build.generate.cloth_cell import find_cell, mirror_index, window_scores
from dlcr_data.build.generate.swap import SwapGenerator, adain_lab, stripe_regions
from dlcr_data.build.parse import OracleParser, clothing_mask
from dlcr_data.demo.plan import DemoConfig
from dlcr_data.demo.render import _plan, render_shot
from dlcr_data.errors import UserError
from dlcr_data.vocab.colors import rgb_to_lab
from dlcr_data.vocab.garments import CLASS_ID, OUTFIT_PARTS

GENERATOR_CLASSES = {"clone": CloneGenerator, "swap": SwapGenerator}


def make_generator(name: str) -> Generator:
    return lookup(GENERATORS, name, "generator")()


def needs_donor(name: str) -> bool:
    """What a generator class declares, read without building it."""
    return lookup(GENERATORS, name, "generator").needs_donor


# --- demo people ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def people() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(outfit text, RGB, canonical garment map) of the first train shot of every demo identity, rendered in memory."""
    config = DemoConfig(seed=0, num_ids=8, images_per_camera=1)
    plan, lut = _plan(config), OracleParser("demo").lut
    out, seen = [], set()
    for shot in plan.shots:
        if shot.pid in seen:
            continue
        seen.add(shot.pid)
        rgb, labels = render_shot(config, shot)
        out.append((plan.outfit(shot).text(), rgb, lut[labels]))
    return out


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


# --- registry ---------------------------------------------------------------------------------------------------


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


# --- clone ------------------------------------------------------------------------------------------------------


def test_clone_moves_garment_colours_to_the_donor(people):
    checked = 0
    for src, donor in pairs(people):
        req = make_request(src, donor)
        out = np.asarray(CloneGenerator().generate([req])[0])
        for name, _ in OUTFIT_PARTS:
            region = part(src[2], name) & req.mask
            donor_part = part(donor[2], name)
            if region.sum() < 30 or donor_part.sum() < 30:
                continue
            target = lab_of(donor[1], donor_core(donor_part, 8)).mean(0)
            before = np.linalg.norm(lab_of(src[1], region).mean(0) - target)
            if before < 20:  # similar garments: nothing to measure
                continue
            after = np.linalg.norm(lab_of(out, region).mean(0) - target)
            assert after < 0.35 * before, (name, src[0], donor[0], before, after)
            checked += 1
    assert checked >= 4


def smooth_texture(h: int, w: int, x0: float = 0.0, y0: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """RGB of a smooth striped texture at pixel centres, in garment coordinates ((x - x0) / scale, ...)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    gx, gy = (x - x0) / scale, (y - y0) / scale
    r = 120 + 70 * np.sin(2 * np.pi * gy / 12.0)
    g = 60 + 3.0 * gx
    b = 90 + 50 * np.cos(2 * np.pi * gx / 16.0)
    return np.clip(np.stack([r, g, b], -1), 0, 255)


def test_clone_known_homography_reproduces_the_donor():
    """Donor garment: a 24x16 rectangle; target garment: the same rectangle scaled 2x and shifted. The clone must
    be the donor's texture, stretched: the target-to-donor map is x_d = dx0 - 0.5 + (x_t - tx0 + 0.5) / 2."""
    h, w, upper = 128, 64, CLASS_ID["upper"]
    dy0, dx0, tx0, ty0 = 10, 30, 8, 50
    donor_map = np.zeros((h, w), np.uint8)
    donor_map[dy0 : dy0 + 24, dx0 : dx0 + 16] = upper
    donor = np.full((h, w, 3), 200.0)
    donor[donor_map == upper] = smooth_texture(h, w, dx0, dy0)[donor_map == upper]
    target_map = np.zeros((h, w), np.uint8)
    target_map[ty0 : ty0 + 48, tx0 : tx0 + 32] = upper
    target = np.full((h, w, 3), 90, np.uint8)
    mask = target_map == upper
    req = GenerationRequest(
        key="k", image=Image.fromarray(target), garment_map=target_map, mask=mask, prompt="", negative_prompt="",
        target_text="", seed=0, donor_image=Image.fromarray(np.rint(donor).astype(np.uint8)),
        donor_garment_map=donor_map,
    )  # fmt: skip
    out = np.asarray(CloneGenerator(keep_shading=False).generate([req])[0]).astype(np.float64)
    # Garment coordinate of a target pixel: (x_t - tx0 + 0.5) / 2 - 0.5 = (x_t - (tx0 + 0.5)) / 2.
    expected = smooth_texture(h, w, tx0 + 0.5, ty0 + 0.5, scale=2.0)
    inner = np.zeros((h, w), bool)
    inner[ty0 + 4 : ty0 + 44, tx0 + 4 : tx0 + 28] = True  # > 1.5 donor pixels from the edge: no holes
    err = np.abs(out[inner] - expected[inner])
    assert err.mean() < 2.0 and err.max() < 8.0, (err.mean(), err.max())
    np.testing.assert_array_equal(out[~mask], target[~mask])
    # The edge pixels map onto the donor's outermost pixels, left out as mixed: filled from the tiled cell, which
    # lies inside the donor garment, so their colours stay within the donor texture's range.
    edge = mask & ~inner
    lo, hi = donor[donor_map == upper].min(0), donor[donor_map == upper].max(0)
    assert ((out[edge] >= lo - 2) & (out[edge] <= hi + 2)).all()


def garment_request(target: np.ndarray, target_map: np.ndarray, donor: np.ndarray, donor_map: np.ndarray):
    mask = np.isin(target_map, [c for _, cls in OUTFIT_PARTS for c in cls])
    return GenerationRequest(
        key="k", image=Image.fromarray(target), garment_map=target_map, mask=mask, prompt="", negative_prompt="",
        target_text="", seed=0, donor_image=Image.fromarray(donor), donor_garment_map=donor_map,
    )  # fmt: skip


def test_clone_fills_holes_with_the_tiled_cell():
    """The donor's striped shirt is occluded in the middle (hair, say): where the target's shirt maps into the
    occluder, the clone shows the mirror-tiled stripes, not a flat mean colour."""
    h, w, upper = 64, 48, CLASS_ID["upper"]
    a, b = np.array([200, 40, 40]), np.array([240, 220, 60])
    shirt = np.zeros((h, w), bool)
    shirt[10:58, 8:40] = True
    occluder = np.zeros((h, w), bool)
    occluder[26:40, 16:32] = True
    donor_map = np.where(shirt & ~occluder, upper, np.where(occluder, CLASS_ID["hair"], 0)).astype(np.uint8)
    donor = np.where(((np.arange(h) // 3) % 2 == 0)[:, None, None], a, b).repeat(w, 1).astype(np.uint8)
    donor[donor_map != upper] = (20, 20, 20)
    target = np.full((h, w, 3), 90, np.uint8)
    target_map = np.where(shirt, upper, 0).astype(np.uint8)  # the same shirt, unoccluded: identity homography
    req = garment_request(target, target_map, donor, donor_map)
    out = np.asarray(CloneGenerator(keep_shading=False, feather=0).generate([req])[0]).astype(int)
    px = out[occluder]
    near_a = np.abs(px - a).max(1) <= 12
    near_b = np.abs(px - b).max(1) <= 12
    assert (near_a | near_b).mean() > 0.9  # cloth colours, not their mean
    assert near_a.mean() > 0.25 and near_b.mean() > 0.25
    # Away from the occluder and the shirt's edges (mixed pixels are not sampled) the clone is the donor itself.
    seen = np.zeros((h, w), bool)
    seen[12:56, 10:38] = True
    seen[24:42, 14:34] = False
    np.testing.assert_array_equal(out[seen], donor[seen])


def test_clone_keeps_the_target_shading():
    h, w, upper = 64, 48, CLASS_ID["upper"]
    target_map = np.zeros((h, w), np.uint8)
    target_map[8:56, 8:40] = upper
    x = np.arange(w)[None, :, None]
    target = np.clip(60 + 5 * (x - 8), 0, 255).repeat(h, 0).repeat(3, 2).astype(np.uint8)  # dark left, bright right
    donor = np.full((h, w, 3), 150, np.uint8)
    donor[..., 2] = 60
    region = target_map == upper
    out = np.asarray(CloneGenerator().generate([garment_request(target, target_map, donor, target_map)])[0])
    light, src_light = lab_of(out, region)[:, 0], lab_of(target, region)[:, 0]
    assert np.corrcoef(light, src_light)[0, 1] > 0.9 and light.std() > 5
    flat = np.asarray(
        CloneGenerator(keep_shading=False).generate([garment_request(target, target_map, donor, target_map)])[0]
    )
    assert lab_of(flat, region)[:, 0].std() < 0.5


def test_homography_and_min_area_rect():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (4, 2))
    dst = src @ np.array([[1.2, 0.1], [-0.2, 0.9]]) + [5.0, -3.0] + rng.normal(0, 4, (4, 2))
    m = homography(src, dst)
    np.testing.assert_allclose(np.stack(apply_homography(m, src[:, 0], src[:, 1]), 1), dst, atol=1e-8)

    box = np.zeros((40, 30), bool)
    box[5:25, 3:13] = True  # an axis-aligned rectangle: corners on the pixel edges, TL, TR, BR, BL
    np.testing.assert_allclose(min_area_rect(box), [[2.5, 4.5], [12.5, 4.5], [12.5, 24.5], [2.5, 24.5]], atol=1e-9)

    # A rectangle 30 x 12 turned by 20 degrees (clockwise on screen, y down): found within a degree.
    y, x = np.mgrid[0:64, 0:64] - 31.5
    t = np.deg2rad(20.0)
    u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    rect = (np.abs(u) <= 15) & (np.abs(v) <= 6)
    c = min_area_rect(rect)
    top = c[1] - c[0]
    assert abs(np.degrees(np.arctan2(top[1], top[0])) - 20.0) < 1.0
    assert abs(np.linalg.norm(top) - 31) < 1.5 and abs(np.linalg.norm(c[3] - c[0]) - 13) < 1.5
    assert c[0][0] < c[1][0] and c[0][1] < c[3][1]  # top-left first, not flipped


def mirror_tile(cell: np.ndarray, shape: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Mirrored copies of `cell` over `shape`, its top-left at `origin`, indexed as `clone` fills holes."""
    rows = mirror_index(np.arange(shape[0]) - origin[0], cell.shape[0])
    cols = mirror_index(np.arange(shape[1]) - origin[1], cell.shape[1])
    return cell[rows[:, None], cols[None, :]]


def test_mirror_tile_pattern():
    cell = np.arange(12).reshape(3, 4)
    out = mirror_tile(cell, (7, 10))
    np.testing.assert_array_equal(out[0:3, 0:4], cell)
    np.testing.assert_array_equal(out[3:6, 0:4], cell[::-1])  # odd row: vertical flip
    np.testing.assert_array_equal(out[0:3, 4:8], cell[:, ::-1])  # odd column: horizontal flip
    np.testing.assert_array_equal(out[3:6, 4:8], cell[::-1, ::-1])  # odd/odd: both
    np.testing.assert_array_equal(out[6:7, 8:10], cell[0:1, 0:2])  # even/even again
    np.testing.assert_array_equal(out[2], out[3])  # seamless: tiles meet in mirror images
    np.testing.assert_array_equal(mirror_index(np.array([-1, -3, -4, 3]), 3), [0, 2, 2, 2])  # before the origin
    shifted = mirror_tile(cell, (6, 8), origin=(3, 4))
    np.testing.assert_array_equal(shifted[3:6, 4:8], cell)


def test_window_score_prefers_homogeneous_cloth():
    rng = np.random.default_rng(1)
    h, w = 48, 40
    rgb = np.zeros((h, w, 3))
    rgb[:, :20] = np.array([60, 90, 160]) + rng.normal(0, 1.5, (h, 20, 3))  # flat blue cloth, sensor noise
    blotches = rng.uniform(40, 220, (h // 2, 10, 3)).repeat(2, 0).repeat(2, 1)  # 2-px random blotches
    rgb[:, 20:] = blotches
    region = np.ones((h, w), bool)
    region[:, 0] = region[0] = region[-1] = False
    rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    cell = find_cell(rgb, region, stride=2)
    assert cell is not None and cell.size >= 8
    assert cell.x0 + cell.size <= 20, cell  # in the flat half
    assert region[cell.y0 : cell.y0 + cell.size, cell.x0 : cell.x0 + cell.size].all()
    # Mirror the image: the cell follows the flat half.
    flipped = find_cell(np.ascontiguousarray(rgb[:, ::-1]), np.ascontiguousarray(region[:, ::-1]), stride=2)
    assert flipped is not None and flipped.x0 >= 20
    # The / k^2 favours large windows: a big mildly noisy window beats a small patch eight times calmer (which
    # would win on the spread alone).
    cloth = np.clip(np.rint(np.array([150, 80, 60]) + rng.normal(0, 4, (40, 40, 3))), 0, 255)
    cloth[8:16, 8:16] = np.clip(np.rint(np.array([150, 80, 60]) + rng.normal(0, 0.5, (8, 8, 3))), 0, 255)
    big = find_cell(cloth.astype(np.uint8), np.ones((40, 40), bool), stride=2)
    assert big is not None and big.size == 16, big
    # Scores: a constant window scores 0; a window with any cell outside the region scores inf.
    feats = np.ones((4, 4, 2))
    inside = np.ones((4, 4), bool)
    inside[0, 0] = False
    s = window_scores(feats, inside, 2)
    assert s.shape == (3, 3) and np.isinf(s[0, 0]) and (s.flat[1:] == 0).all()
    # Too small for a 2x2-cell window (grid narrower than 4 cells): no cell, the clone uses the mean colour.
    assert find_cell(rgb[:, :6], region[:, :6], stride=2) is None


# --- swap -------------------------------------------------------------------------------------------------------


def test_swap_matches_donor_statistics_and_keeps_structure(people):
    lo, hi = 0.5, 1.5
    checked = 0
    for src, donor in pairs(people):
        req = make_request(src, donor)
        out = np.asarray(SwapGenerator(lightness_ratio=(lo, hi)).generate([req])[0])
        for name, _ in OUTFIT_PARTS:
            region = part(src[2], name) & req.mask
            if region.sum() < 30 or part(donor[2], name).sum() < 30:
                continue
            s, d, o = lab_of(src[1], region), lab_of(donor[1], donor_core(part(donor[2], name), 8)), lab_of(out, region)
            # Appearance: the donor's mean (rounding to uint8 and the sRGB gamut cost a little).
            np.testing.assert_allclose(o.mean(0), d.mean(0), atol=2.5, err_msg=f"{name}: {src[0]} <- {donor[0]}")
            # Lightness spread: the donor's, within the clipped ratio.
            expected = np.clip(d[:, 0].std() / s[:, 0].std(), lo, hi) * s[:, 0].std()
            assert abs(o[:, 0].std() - expected) < 0.1 * expected + 0.3, (name, o[:, 0].std(), expected)
            # Structure: the source's lightness pattern, position by position.
            assert np.corrcoef(o[:, 0], s[:, 0])[0, 1] > 0.97
            # Chroma spread (rotation-invariant: the hue frame turns) never exceeds the source's (ratio <= 1) nor,
            # beyond rounding, the donor's.
            spread = [np.sqrt(x[:, 1:].var(0).sum()) for x in (o, s, d)]
            assert spread[0] <= min(spread[1:]) * 1.05 + 1.0, (name, spread)
            checked += 1
    assert checked >= 8


def test_swap_without_lightness_keeps_source_lightness(people):
    src, donor = pairs(people)[0]
    req = make_request(src, donor)
    out = np.asarray(SwapGenerator(transfer_lightness=False).generate([req])[0])
    region = part(src[2], "top") & req.mask
    s, o = lab_of(src[1], region), lab_of(out, region)
    assert np.abs(o[:, 0] - s[:, 0]).mean() < 2.0  # gamut clipping may move a few
    assert np.linalg.norm(o[:, 1:].mean(0) - s[:, 1:].mean(0)) > 5  # the colour did change


def test_adain_chroma_is_hue_aligned():
    """A blue garment with desaturated edge pixels, recoloured red: the desaturated pixels must become a paler
    red, not orange (per-channel a*, b* AdaIN would push them away from blue, i.e. towards yellow)."""
    rng = np.random.default_rng(0)
    blue = np.array([35.0, 25.0, -60.0])
    src = np.concatenate([blue + rng.normal(0, 1.5, (200, 3)), blue * [1.4, 0.5, 0.5] + rng.normal(0, 1, (20, 3))])
    red = np.array([40.0, 55.0, 35.0])
    donor = red + rng.normal(0, 2.0, (300, 3))
    out = adain_lab(src, donor, (0.5, 1.5), (0.0, 1.0))
    hue = np.degrees(np.arctan2(out[:, 2], out[:, 1]))
    red_hue = np.degrees(np.arctan2(red[2], red[1]))
    assert np.abs(hue[200:] - red_hue).max() < 12
    assert (np.hypot(out[200:, 1], out[200:, 2]) < np.hypot(red[1], red[2]) - 5).all()  # paler
    np.testing.assert_allclose(out.mean(0), donor.mean(0), atol=1e-9)


def test_swap_stripes(people):
    src, donor = pairs(people)[2]
    req = make_request(src, donor)
    out = np.asarray(SwapGenerator(stripes=True, feather=0).generate([req])[0])
    np.testing.assert_array_equal(out[~req.mask], src[1][~req.mask])
    stripes, donor_stripes = stripe_regions(src[2]), stripe_regions(donor[2])
    assert len(stripes) == 4 and not (stripes[0] & stripes[1]).any()
    for region, donor_region in zip(stripes, donor_stripes, strict=True):
        region = region & req.mask
        if region.sum() < 30 or donor_region.sum() < 30:
            continue
        d = lab_of(donor[1], donor_core(donor_region, 8))
        np.testing.assert_allclose(lab_of(out, region).mean(0), d.mean(0), atol=2.5)


def test_feather_recolours_mixed_edge_pixels_only():
    """A garment block, a ring of half-garment half-background pixels labelled background, then background: the
    ring takes half the change, the background beyond stays, nothing moves outside the mask."""
    h, w = 20, 20
    bg, old, new = np.array([120.0, 120, 120]), np.array([200.0, 40, 40]), np.array([40.0, 60, 200])
    src = np.tile(bg, (h, w, 1))
    changed = np.zeros((h, w), bool)
    changed[6:14, 6:14] = True
    ring = np.zeros((h, w), bool)
    ring[5:15, 5:15] = True
    ring &= ~changed
    src[changed], src[ring] = old, 0.5 * old + 0.5 * bg
    src = src.astype(np.uint8)
    out = src.copy()
    out[changed] = new.astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[3:17, 3:17] = True
    mask[:, 14:] = False  # the ring's right side lies outside the mask
    feather_into_mask(src, out, changed, mask & ~changed, radius=1)
    inner_ring = ring & mask
    expect = 0.5 * new + 0.5 * bg  # the mixed pixels: half the new garment colour now
    assert np.abs(out[inner_ring].astype(float) - expect).max() <= 1.0
    far = mask & ~changed & ~ring
    np.testing.assert_array_equal(out[far], src[far])  # pure background: no halo
    np.testing.assert_array_equal(out[~mask], src[~mask])
    # A third colour next to the garment (skin, say) is no mix of garment and background: left alone.
    src2 = src.copy()
    src2[ring] = (230, 190, 150)
    out2 = src2.copy()
    out2[changed] = new.astype(np.uint8)
    feather_into_mask(src2, out2, changed, mask & ~changed, radius=1)
    np.testing.assert_array_equal(out2, np.where(changed[..., None], out2, src2))
