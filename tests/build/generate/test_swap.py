"""`swap`: DG-Net-style AdaIN appearance swap in Lab, per garment part or per stripe."""

from __future__ import annotations

import numpy as np
from generation_cases import lab_of, make_request, pairs, part

from dlcr_data.build.generate.clone import (
    donor_core,
)
from dlcr_data.build.generate.swap import SwapGenerator, adain_lab, stripe_regions
from dlcr_data.vocab.garments import OUTFIT_PARTS


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
