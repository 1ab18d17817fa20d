"""`clone`: ClonedPerson's outfit cloning (homography onto the target garment, holes filled from the tiled cloth
cell, feathered edges)."""

from __future__ import annotations

import numpy as np
from generation_cases import lab_of, make_request, pairs, part
from PIL import Image

from dlcr_data.build.generate import GenerationRequest
from dlcr_data.build.generate.clone import (
    CloneGenerator,
    apply_homography,
    donor_core,
    feather_into_mask,
    homography,
    min_area_rect,
)
from dlcr_data.vocab.garments import CLASS_ID, OUTFIT_PARTS


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
